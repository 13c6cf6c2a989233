"""A compiled `CurvatureOracle` for a Keras model and loss: one graph per quantity.

The tape-based `CurvatureOracle` records a point once and replays it, which is
the cheapest use of a graph *inside one* ``tf.function``, but executed eagerly
every op of a recurrent network's double backward pass is dispatched from Python
(seconds per product for a small bidirectional GRU). `KerasCurvature` traces, once
per model and loss, graph functions that take the batch and a vector as arguments
and rebuild the linearization inside the graph. Each product re-runs the forward
pass, but as compiled code; the batch changing never retraces. Dropout masks stay
the same for all products at a point because the random-generator state (a
non-trainable variable) is reset before each call, as are BatchNorm statistics.
"""

import json
import weakref

import tensorflow as tf
from ctc_newton._keras_adapter import get_keras_mask, set_keras_mask

from ctc_newton.curvature.graph import GraphFunctions, GraphOracle
from ctc_newton.curvature.vectors import flatten
from ctc_newton.curvature.oracle import CurvatureOracle

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def with_keras_mask(outputs, mask):
    """``outputs`` with ``mask`` attached as its Keras mask (if any)."""
    if mask is not None:
        set_keras_mask(outputs, mask)
    return outputs


def _loss_key(loss) -> str:
    """What identifies a loss for the cache: its class and configuration (two
    equal losses share traces; a new wrapper object does not retrace)."""
    try:
        config = json.dumps(loss.get_config(), sort_keys=True, default=repr)
    except (NotImplementedError, TypeError, AttributeError):
        config = repr(id(loss))  # no usable config: only this object is known equal
    fn = getattr(loss, "fn", None)  # a wrapped loss function is part of its identity
    return f"{type(loss).__module__}.{type(loss).__qualname__}:{config}:{fn!r}"


class KerasCurvature(GraphFunctions):
    """`GraphFunctions` of ``(x, y, sample_weight)`` for one model and loss."""

    def __init__(self, model, loss):
        self.model = model
        self.loss = loss
        super().__init__(
            lambda x, y, sample_weight: CurvatureOracle.from_keras(
                model, loss, x, y, sample_weight
            ),
            model.trainable_variables,
        )

        # fit reports metrics on the outputs; a graph output drops the Keras mask: return it
        def value_gradient_and_outputs(batch):
            oracle = CurvatureOracle.from_keras(model, loss, *batch)
            value, gradient = oracle.value_and_gradient()
            outputs = oracle.outputs()
            return value, gradient, flatten(gradient), (outputs, get_keras_mask(outputs))

        self.value_and_gradient = tf.function(
            value_gradient_and_outputs, reduce_retracing=True, autograph=False
        )

    @classmethod
    def get(cls, model, loss) -> "KerasCurvature":
        """The functions for ``model`` and ``loss``, traced once per model and loss
        configuration."""
        per_model = _CACHE.setdefault(model, {})
        key = _loss_key(loss)
        if key not in per_model:
            per_model[key] = cls(model, loss)
        return per_model[key]


class CompiledKerasOracle(GraphOracle):
    """The oracle interface for a Keras model on one batch, run as graphs.

    Built by `ctc_newton.curvature.keras_oracle` (and so by ``model.fit``).
    """

    def __init__(self, model, loss, x, y, sample_weight=None):
        super().__init__(
            KerasCurvature.get(model, loss),
            model.trainable_variables,
            batch=(x, y, sample_weight),
            restore=model.non_trainable_variables,
        )
        self._keras = (model, loss, (x, y, sample_weight))

    def keras_batch(self):
        return self._keras

    def outputs(self):
        """The model outputs at the point (same dropout masks as the products), with
        their Keras mask; computed with the value and gradient."""
        self._value_and_gradient()
        (outputs_and_mask,) = self._extras
        return with_keras_mask(*outputs_and_mask)
