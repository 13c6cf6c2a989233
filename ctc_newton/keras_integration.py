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
(single-output models, as ``CurvatureOracle.from_keras``); the optimizer takes
its step; loss and metrics are reported for the batch *before* the step (as
Keras does); BatchNorm statistics are updated by one forward pass at the new
weights; the logs carry the step's damping / radius, CG iterations, rho and
step size. ``LBFGS`` runs its ``max_iterations`` iterations on each batch and
keeps its curvature memory across batches (one batch = full-batch L-BFGS).
"""

import math

import tensorflow as tf
from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
from keras.src.trainers import data_adapters

from ctc_newton.curvature import CurvatureOracle
from ctc_newton.optimizers.base import SecondOrderOptimizer

_ORIGINAL = {}
LOGGED = ("damping", "radius", "cg_iterations", "rho", "step_size", "accepted",
          "lbfgs_iterations")


def second_order_optimizer(model):
    """The model's ctc_newton optimizer (unwrapped from loss scaling), or None."""
    optimizer = getattr(model, "optimizer", None)
    inner = getattr(optimizer, "inner_optimizer", None)
    if isinstance(inner, SecondOrderOptimizer):
        return inner
    return optimizer if isinstance(optimizer, SecondOrderOptimizer) else None


def second_order_train_step(model, data):
    """One second-order step of ``model`` on one batch; returns the logs."""
    optimizer = second_order_optimizer(model)
    if model.distribute_strategy.num_replicas_in_sync > 1:
        raise NotImplementedError(
            f"{type(optimizer).__name__} under a distribution strategy with "
            f"{model.distribute_strategy.num_replicas_in_sync} replicas is not supported yet; "
            "train without the strategy scope.")
    x, y, sample_weight = data_adapters.data_adapter_utils.unpack_x_y_sample_weight(data)
    if model.loss is None:
        raise ValueError("compile the model with a `loss` to train it with "
                         f"{type(optimizer).__name__}.")
    if not model.optimizer.built:  # also a LossScaleOptimizer wrapping ours
        model.optimizer.build(model.trainable_variables)
    oracle = CurvatureOracle.from_keras(model, model.loss, x, y, sample_weight, compiled=True)
    loss = oracle.value()
    y_pred = oracle.outputs()
    record = optimizer.step(oracle)
    if not record.get("accepted", True) and not math.isfinite(record.get("value", 0.0)):
        _lower_loss_scale(model)
    if model.non_trainable_variables:  # e.g. BatchNorm statistics, at the new weights
        model(x, training=True)
    batch_size = tf.shape(tf.nest.flatten(x)[0])[0]
    model._loss_tracker.update_state(loss, sample_weight=batch_size)
    logs = dict(model.compute_metrics(x, y, y_pred, sample_weight=sample_weight))
    for key in LOGGED:
        if key in record and record[key] is not None:
            logs[key] = float(record[key])
    return logs


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
    if second_order_optimizer(self) is None or self.run_eagerly:
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


__all__ = ["install", "uninstall", "is_installed", "second_order_train_step",
           "second_order_optimizer"]
