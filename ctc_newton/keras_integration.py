"""``model.fit`` with ctc_newton's second-order optimizers: a guarded train-step hook.

Importing ctc_newton installs, once, a dispatcher on Keras' TensorFlow trainer:

- ``train_step`` diverts to `second_order_train_step` when the model's optimizer
  (unwrapped from a ``LossScaleOptimizer``) is a ctc_newton optimizer, and calls
  Keras' own ``train_step`` otherwise: every other optimizer is untouched.
- ``make_train_function`` builds the training function without ``tf.function``
  for those models only: the optimizers' steps (CG with accept/reject decisions)
  are Python control flow. Evaluation and prediction stay compiled.

So ``model.compile(optimizer=ctc_newton.optimizers.HessianFree(), loss=...)`` and
``model.fit(...)`` take one second-order step per batch with no other line of
code. `uninstall` removes the hook.

Semantics per batch: an oracle is linearized on the batch with the compiled loss
(single-output models, as `ctc_newton.curvature.keras_oracle`); the optimizer takes
its step; loss and metrics are reported for the batch *before* the step (as
Keras does); BatchNorm statistics are updated by one forward pass at the new
weights; the logs carry the step's damping / radius, CG iterations, rho and
step size. ``LBFGS`` runs its ``max_iterations`` iterations on each batch and
keeps its curvature memory across batches (one batch = full-batch L-BFGS).

Under a multi-replica ``tf.distribute`` strategy the training function runs the
step once, in cross-replica context, on the per-replica shards of each batch:
every quantity is computed on all replicas and all-reduced
(`ctc_newton.curvature.distributed`), so the step equals the single-device step
on the global batch. (Keras' own ``train_step`` runs per replica; a CG solve
with accept/reject decisions must be one decision for all of them.)
"""

import math
import warnings
import weakref
from typing import Callable, Dict

import tensorflow as tf

from ctc_newton import _interrupts
from ctc_newton._keras_adapter import (
    TensorFlowTrainer,
    get_keras_mask,
    loss_tracker,
    reduce_per_replica,
    seed_generators,
    unpack_x_y_sample_weight,
)

from ctc_newton.curvature import keras_oracle
from ctc_newton.curvature.compiled import with_keras_mask
from ctc_newton.optimizers.base import SecondOrderOptimizer

_ORIGINAL: Dict[str, Callable] = {}
_COMPILED_UPDATES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_WARNED_INFEASIBLE: "weakref.WeakSet" = weakref.WeakSet()


class InfeasibleSequenceWarning(RuntimeWarning):
    """A training batch holds sequences with no CTC alignment: its loss is +inf."""


def second_order_optimizer(model):
    """The model's ctc_newton optimizer (unwrapped from loss scaling), or None."""
    optimizer = getattr(model, "optimizer", None)
    inner = getattr(optimizer, "inner_optimizer", None)
    if isinstance(inner, SecondOrderOptimizer):
        return inner
    return optimizer if isinstance(optimizer, SecondOrderOptimizer) else None


def second_order_train_step(model, data):
    """One second-order step of ``model`` on one batch; returns the logs.

    Under a multi-replica strategy it runs in cross-replica context (see
    `_distributed_train_function`): ``data`` holds each replica's shard, every
    oracle quantity is summed over the shards, and the step is the one a single
    device takes on the global batch.

    A Ctrl-C that Python dropped since the last step (see `ctc_newton._interrupts`)
    is raised here, before the weights move.
    """
    _interrupts.raise_if_dropped()
    try:
        return _step_and_logs(model, data)
    except KeyboardInterrupt:
        _interrupts.seen()
        raise


def _step_and_logs(model, data):
    optimizer = second_order_optimizer(model)
    x, y, sample_weight = unpack_x_y_sample_weight(data)
    if model.loss is None:
        raise ValueError(
            f"compile the model with a `loss` to train it with {type(optimizer).__name__}."
        )
    if not model.optimizer.built:  # also a LossScaleOptimizer wrapping ours
        model.optimizer.build(model.trainable_variables)
    oracle = keras_oracle(model, model.loss, x, y, sample_weight)
    loss = oracle.value()
    y_pred = oracle.outputs()
    step = optimizer.step(oracle)
    if not step.accepted and not math.isfinite(step.value):
        _lower_loss_scale(model)
        if step.value == math.inf:
            _warn_infeasible(model, optimizer, y, y_pred)
    return dict(_after_step(model)(x, y, y_pred, sample_weight, loss), **step.logs())


def _warn_infeasible(model, optimizer, y, y_pred):
    """Says once per model that +inf batches are rejected, how many sequences cause
    it, and the fix (the other sequences of such a batch never train)."""
    if model in _WARNED_INFEASIBLE:
        return
    count = "Some"
    per_sequence = getattr(model.loss, "call", None)
    if (
        per_sequence is not None
        and not isinstance(y, dict)
        and model.distribute_strategy.num_replicas_in_sync == 1
    ):
        losses = tf.convert_to_tensor(per_sequence(y, y_pred))
        if losses.shape.rank == 1:
            infinite = int(tf.reduce_sum(tf.cast(tf.math.is_inf(losses), tf.int32)))
            if infinite == 0:
                return  # +inf from elsewhere (e.g. a float16 overflow), not alignments
            count = f"{infinite} of {int(tf.size(losses))}"
    _WARNED_INFEASIBLE.add(model)
    warnings.warn(
        f"{count} sequences in a training batch have no feasible CTC alignment (their "
        "labels need more frames than the logits give), so the batch loss is +inf and "
        f"{type(optimizer).__name__} rejects every step on that batch: the other "
        "sequences in it never train. Use CTCLoss(zero_infinity=True) to give them zero "
        "loss and gradient, or give them more frames (longer inputs, less downsampling). "
        "(Said once per model.)",
        InfeasibleSequenceWarning,
        stacklevel=2,
    )


def _after_step(model):
    """``(x, y, y_pred, sample_weight, loss) -> metric results`` for the step's batch.

    Updates BatchNorm statistics with one forward pass at the new weights (a
    model whose only such state is dropout seeds has them advanced instead), the
    loss tracker with the batch loss *before* the step (as Keras reports it), and
    the compiled metrics on the outputs before the
    step; one graph function, traced once per model (eagerly, a recurrent forward
    pass dispatches every time step's ops from Python). Under a strategy it runs
    per replica, as Keras' own train step does, and the replicas' results are
    reduced.
    """
    strategy = model.distribute_strategy

    def update(x, y, y_pred, sample_weight, loss, mask=None):
        with_keras_mask(y_pred, mask)  # strategy.run passes tensors without attributes
        # A forward pass moves BatchNorm statistics; seeds alone are advanced directly.
        generators = seed_generators(model)
        seed_states = {id(generator.state) for generator in generators}
        if any(id(v) not in seed_states for v in model.non_trainable_variables):
            model(x, training=True)
        else:
            for generator in generators:
                generator.next()
        batch_size = tf.shape(tf.nest.flatten(x)[0])[0]
        loss_tracker(model).update_state(loss, sample_weight=batch_size)
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    if model not in _COMPILED_UPDATES:
        _COMPILED_UPDATES[model] = tf.function(update, reduce_retracing=True)
    per_replica = _COMPILED_UPDATES[model]
    if strategy.num_replicas_in_sync == 1:  # a graph output drops the mask: pass it
        return lambda x, y, y_pred, sample_weight, loss: per_replica(
            x, y, y_pred, sample_weight, loss, get_keras_mask(y_pred)
        )

    def distributed(x, y, y_pred, sample_weight, loss):
        masks = [get_keras_mask(local) for local in strategy.experimental_local_results(y_pred)]
        mask = (
            None
            if masks[0] is None
            else strategy.experimental_distribute_values_from_function(
                lambda context: masks[context.replica_id_in_sync_group]
            )
        )
        with strategy.scope():
            results = strategy.run(per_replica, args=(x, y, y_pred, sample_weight, loss, mask))
            return reduce_per_replica(results, strategy, reduction="auto")

    return distributed


def _distributed_train_function(model):
    """``fit``'s training function under a multi-replica strategy (eager, cross-replica).

    Keras runs ``train_step`` once per replica; a second-order step is one
    decision for all replicas, so it runs once here on the per-replica shards of
    each batch (``steps_per_execution`` batches per call).
    """

    def function(iterator):
        logs = None
        for _ in range(model.steps_per_execution):
            if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
                optional = iterator.get_next_as_optional()
                if not optional.has_value():
                    break
                data = optional.get_value()
            else:
                data = next(iterator, None)
                if data is None:
                    break
            with model.distribute_strategy.scope():
                logs = second_order_train_step(model, data)
        if logs is None:
            raise StopIteration
        return logs

    return function


def _lower_loss_scale(model):
    """A non-finite loss under mixed precision: halve the dynamic loss scale."""
    scale = getattr(model.optimizer, "dynamic_scale", None)
    if scale is not None:
        scale.assign(scale / 2)


def _train_step(self, data):
    if second_order_optimizer(self) is not None:
        return second_order_train_step(self, data)
    return _ORIGINAL["train_step"](self, data)


def _make_train_function(self, force=False):
    if second_order_optimizer(self) is None:
        return _ORIGINAL["make_train_function"](self, force)
    _interrupts.watch()  # each fit starts here
    if self.distribute_strategy.num_replicas_in_sync > 1:
        if self.train_function is None or force:
            self.train_function = _distributed_train_function(self)
        return self.train_function
    if self.run_eagerly:
        return _ORIGINAL["make_train_function"](self, force)
    previous = self._run_eagerly
    self._run_eagerly = True  # only while building the training function
    try:
        return _ORIGINAL["make_train_function"](self, force)
    finally:
        self._run_eagerly = previous


def install() -> None:
    """Installs the train-step dispatcher (idempotent)."""
    if _ORIGINAL:
        return
    _ORIGINAL["train_step"] = TensorFlowTrainer.train_step
    _ORIGINAL["make_train_function"] = TensorFlowTrainer.make_train_function
    TensorFlowTrainer.train_step = _train_step
    TensorFlowTrainer.make_train_function = _make_train_function


def uninstall() -> None:
    """Restores Keras' own train step."""
    if not _ORIGINAL:
        return
    TensorFlowTrainer.train_step = _ORIGINAL.pop("train_step")
    TensorFlowTrainer.make_train_function = _ORIGINAL.pop("make_train_function")


def is_installed() -> bool:
    return bool(_ORIGINAL)


__all__ = [
    "install",
    "uninstall",
    "is_installed",
    "second_order_train_step",
    "second_order_optimizer",
    "InfeasibleSequenceWarning",
]
