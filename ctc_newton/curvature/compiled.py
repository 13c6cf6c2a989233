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

import weakref
from typing import Optional

import tensorflow as tf
from keras.src.backend.common.masking import get_keras_mask, set_keras_mask

from ctc_newton.curvature import vectors
from ctc_newton.curvature.oracle import CurvatureOracle

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def with_keras_mask(outputs, mask):
    """``outputs`` with ``mask`` attached as its Keras mask (if any)."""
    if mask is not None:
        set_keras_mask(outputs, mask)
    return outputs


class KerasCurvature:
    """Graph functions of ``(x, y, sample_weight[, vector])`` for one model and loss."""

    def __init__(self, model, loss):
        self.model = model
        self.loss = loss

        def oracle(x, y, sample_weight):
            return CurvatureOracle._from_keras_uncompiled(model, loss, x, y, sample_weight)

        def value_and_gradient(x, y, sample_weight):
            o = oracle(x, y, sample_weight)
            return o.value(), o.gradient()

        def value(x, y, sample_weight):
            return oracle(x, y, sample_weight).value()

        def product(x, y, sample_weight, vector, kind):
            return oracle(x, y, sample_weight).curvature_vector_product(vector, kind)

        def squared_gradients(x, y, sample_weight):
            return oracle(x, y, sample_weight).squared_gradient_diagonal()

        def outputs(x, y, sample_weight):  # a graph output drops the Keras mask: return it
            outputs = model(x, training=True)
            return outputs, get_keras_mask(outputs)

        options = dict(reduce_retracing=True)
        self.value_and_gradient = tf.function(value_and_gradient, **options)
        self.value = tf.function(value, **options)
        self.product = tf.function(product, **options)
        self.squared_gradients = tf.function(squared_gradients, **options)
        self.outputs = tf.function(outputs, **options)

    @classmethod
    def get(cls, model, loss) -> "KerasCurvature":
        per_model = _CACHE.setdefault(model, {})
        key = id(loss)
        if key not in per_model:
            per_model[key] = cls(model, loss)
        return per_model[key]


class CompiledKerasOracle:
    """`CurvatureOracle`'s interface for a Keras model on one batch, run as graphs.

    Built by ``CurvatureOracle.from_keras(..., compiled=True)``.
    """

    def __init__(self, model, loss, x, y, sample_weight=None):
        self.variables = list(model.trainable_variables)
        self._functions = KerasCurvature.get(model, loss)
        self._batch = (x, y, sample_weight)
        self._restore = list(model.non_trainable_variables)
        self._outputs_fn = self.outputs  # what minimize() checks for Gauss-Newton support
        self.num_function_evaluations = 0
        self.num_gradient_evaluations = 0
        self.num_curvature_products = 0
        self.linearize()

    # The state of random generators and BatchNorm statistics at the point: every call
    # starts from it and leaves it as it was.
    def _call(self, fn, *args):
        for variable, value in zip(self._restore, self._saved):
            variable.assign(value)
        try:
            return self._invoke(fn, *args)
        finally:
            for variable, value in zip(self._restore, self._saved):
                variable.assign(value)

    def _invoke(self, fn, *args):
        return fn(*self._batch, *args)

    def linearize(self) -> "CompiledKerasOracle":
        self._saved = [tf.identity(tf.convert_to_tensor(v)) for v in self._restore]
        self._value, self._gradient = None, None
        self.num_function_evaluations += 1
        return self

    def _value_and_gradient(self):
        if self._gradient is None:
            self._value, self._gradient = self._call(self._functions.value_and_gradient)
            self.num_gradient_evaluations += 1
        return self._value, self._gradient

    def value(self):
        if self._value is None:
            self._value_and_gradient()
        return self._value

    def gradient(self):
        return self._value_and_gradient()[1]

    def value_and_gradient(self):
        return self._value_and_gradient()

    def evaluate(self):
        self.num_function_evaluations += 1
        return self._call(self._functions.value)

    def outputs(self):
        """The model outputs at the point (same dropout masks as the products), with
        their Keras mask."""
        return with_keras_mask(*self._call(self._functions.outputs))

    def curvature_vector_product(self, vector, kind: str = "gauss_newton"):
        if kind not in ("hessian", "gauss_newton"):
            raise ValueError(f"`kind` must be 'hessian' or 'gauss_newton', got {kind!r}.")
        self.num_curvature_products += 1
        return self._call(self._functions.product,
                          vectors.structured_like(vector, self.variables), kind)

    def hessian_vector_product(self, vector):
        return self.curvature_vector_product(vector, "hessian")

    def gauss_newton_vector_product(self, vector):
        return self.curvature_vector_product(vector, "gauss_newton")

    def squared_gradient_diagonal(self):
        return self._call(self._functions.squared_gradients)

    @property
    def size(self) -> int:
        return int(sum(v.shape.num_elements() for v in self.variables))

    def hutchinson_diagonal(self, kind: str = "gauss_newton", num_samples: int = 10,
                            seed: Optional[int] = None):
        return CurvatureOracle.hutchinson_diagonal(self, kind, num_samples, seed)

    def as_linear_operator(self, kind: str = "gauss_newton", damping: float = 0.0):
        return CurvatureOracle.as_linear_operator(self, kind, damping)

    def as_scipy_linear_operator(self, kind: str = "gauss_newton", damping: float = 0.0):
        return CurvatureOracle.as_scipy_linear_operator(self, kind, damping)
