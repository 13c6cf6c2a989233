"""Which oracle a caller gets: compiled by default, distributed under a strategy.

The oracle modules do not import each other in a circle: `oracle` (tapes) and
`graph` (graph functions) stand alone, `compiled` and `distributed` build on
them, and this module, above all of them, picks one.
"""

import tensorflow as tf

from ctc_newton.curvature.base import Oracle
from ctc_newton.curvature.compiled import CompiledKerasOracle
from ctc_newton.curvature.distributed import DistributedKerasOracle, is_distributed
from ctc_newton.curvature.oracle import CurvatureOracle, as_keras_loss

__all__ = ["keras_oracle"]


def keras_oracle(
    model, loss, x, y, sample_weight=None, *, training: bool = True, compiled: bool = True
) -> Oracle:
    """An oracle for a Keras model, a loss and one batch, as ``model.fit`` sees it.

    The value is ``loss(y, model(x, training), sample_weight) + sum(model.losses)``
    with the loss's own reduction, so the gradient equals the one ``fit``
    computes (see `CurvatureOracle.from_keras` for masks, dropout and BatchNorm).

    Compiled (the default, and what ``model.fit`` uses): each quantity, and each
    whole CG solve, is a graph function of the batch, traced once per model and
    loss configuration; a new batch never retraces. Inside a multi-replica
    ``strategy.scope()`` the quantities are summed over the replicas' shards.
    Inside a ``tf.function``, with ``training=False`` or ``compiled=False``: the
    tape `CurvatureOracle` (in a trace its recording is graph structure already).

    Args:
      model: a built Keras 3 model (Sequential, functional or subclassed).
      loss: a ``keras.losses.Loss``, a loss function, or a name Keras knows.
      x: the inputs of the batch (per-replica values under a strategy).
      y: the targets of the batch.
      sample_weight: optional ``[B]`` weights.
      training: the ``training`` flag of the forward pass.
      compiled: ``False`` for the eager tape oracle (debugging; slow for
        recurrent models, whose ops are dispatched from Python one by one).

    Returns:
      An `Oracle` over ``model.trainable_variables``.

    Raises:
      ValueError: per-replica ``x``/``y`` outside the scope of their strategy, or an
        unbuilt model.
      TypeError: ``loss`` is not a loss.
    """
    if not (compiled and training and tf.executing_eagerly()):
        return CurvatureOracle.from_keras(model, loss, x, y, sample_weight, training=training)
    loss = as_keras_loss(loss)
    strategy = tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync > 1 and tf.distribute.in_cross_replica_context():
        return DistributedKerasOracle(model, loss, x, y, sample_weight, strategy=strategy)
    if is_distributed((x, y, sample_weight)):
        raise ValueError(
            "`x`/`y` are per-replica values: build the oracle inside "
            "the `strategy.scope()` they were distributed with."
        )
    return CompiledKerasOracle(model, loss, x, y, sample_weight)
