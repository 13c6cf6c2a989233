"""A `CurvatureOracle` over a batch split across the replicas of a ``tf.distribute`` strategy.

An optimizer's step is Python control flow (CG iterations, accept/reject,
damping updates) and runs once, in cross-replica context. Each quantity it asks
for runs on every replica's shard through ``strategy.run`` and is all-reduced
inside the replica function (`oracle._replica_sum`: Keras losses divide each
replica's share by the replica count, so the sum is the global-batch quantity).
A CG ``tf.while_loop`` around an all-reduce fails under ``MirroredStrategy``
("merge_call called while defining a new graph"); this split avoids it.
"""

import tensorflow as tf

from ctc_newton._keras_adapter import flatten_layers
from ctc_newton.curvature.base import Oracle
from ctc_newton.curvature.compiled import CompiledKerasOracle, with_keras_mask


def is_distributed(value) -> bool:
    """Whether any leaf of ``value`` is a per-replica ``tf.distribute`` value."""
    return any(isinstance(leaf, tf.distribute.DistributedValues) for leaf in tf.nest.flatten(value))


class DistributedKerasOracle(CompiledKerasOracle):
    """`CompiledKerasOracle` whose quantities are summed over the replicas' shards.

    Built by `ctc_newton.curvature.keras_oracle` inside a
    multi-replica ``strategy.scope()`` (or by ``model.fit`` under it).

    Args:
      model: a Keras model built under ``strategy``'s scope.
      loss: a Keras ``Loss``.
      x, y, sample_weight: per-replica values (as a distributed dataset yields
        them) or plain tensors (then every replica sees the whole batch and the
        sum is still the batch's quantity).
      strategy: the ``tf.distribute.Strategy``.
    """

    def __init__(self, model, loss, x, y, sample_weight=None, *, strategy):
        self.strategy = strategy
        # Layers that all-reduce in their forward pass (synchronized BatchNormalization)
        # couple the replicas' examples: per-example Jacobians through them deadlock.
        self._synchronized = [
            layer.name for layer in flatten_layers(model) if getattr(layer, "synchronized", False)
        ]
        super().__init__(model, loss, x, y, sample_weight)

    def _invoke(self, fn, *args):
        with self.strategy.scope():
            return self.strategy.run(fn, args=(self._batch, *args))

    # Mirrored variables move in cross-replica context, one assign each, as in the base.
    flat_position = Oracle.flat_position
    assign_flat = Oracle.assign_flat
    evaluate_at = Oracle.evaluate_at

    def solve(self, key, fn, *args):
        """``fn(self, *args)`` with the CG loop on the host: each product is one
        all-reduced call (a ``tf.while_loop`` around an all-reduce fails under
        ``MirroredStrategy``)."""
        return fn(self, *args)

    def _call(self, fn, *args):
        return self._first(super()._call(fn, *args))

    def _value_and_gradient(self):
        if self._gradient is None:  # all-reduced value and gradient; outputs per replica
            *reduced, outputs = super()._call(self._functions.value_and_gradient)
            self._value, self._gradient, self._flat_gradient = self._first(tuple(reduced))
            self._extras = [outputs]
            self.num_gradient_evaluations += 1
        return self._value, self._gradient

    def _first(self, result):
        """Replica 0's copy of an all-reduced result (every replica holds the same)."""
        return tf.nest.map_structure(
            lambda r: self.strategy.experimental_local_results(r)[0], result
        )

    @property
    def supports_squared_gradients(self) -> bool:
        return not self._synchronized

    def squared_gradients_unsupported_reason(self) -> str:
        return (
            "Per-example gradients are not available under a strategy for models with "
            f"synchronized layers ({', '.join(self._synchronized)}); use "
            "BatchNormalization(synchronized=False) or no squared-gradient "
            "preconditioner (HessianFree(preconditioner=False))."
        )

    def outputs(self):
        """The model outputs at the point, per replica (same dropout masks as the products);
        each replica's tensor carries its Keras mask."""
        self._value_and_gradient()
        ((outputs, masks),) = self._extras
        if masks is not None:
            for local, mask in zip(
                self.strategy.experimental_local_results(outputs),
                self.strategy.experimental_local_results(masks),
            ):
                with_keras_mask(local, mask)
        return outputs
