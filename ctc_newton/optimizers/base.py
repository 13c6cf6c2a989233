"""What every ctc_newton optimizer shares: a Keras optimizer whose update is a `step`.

The optimizers subclass ``keras.optimizers.Optimizer`` so that ``model.compile``
accepts them and ``model.save``/``load_model`` and ``tf.train.Checkpoint`` keep
their configuration and state (damping, trust radius, CG warm start, L-BFGS
memory live in optimizer variables). Their update is not a function of a
gradient: `step` takes a `CurvatureOracle` linearized at the variables, moves the
variables and returns a `StepResult`. `ctc_newton.keras_integration`
routes ``model.fit`` to `step`.
"""

import contextlib
import inspect
import math
from typing import Any, Dict, List, Optional, Sequence


import keras
import numpy as np
import tensorflow as tf

from ctc_newton.optimizers._flat import FlatProblem
from ctc_newton.optimizers.step_result import StepResult

FIRST_ORDER_MESSAGE = (
    "{name} is a second-order optimizer: it needs the model, the batch and the loss, "
    "not a gradient. model.fit routes it automatically (import ctc_newton), but this "
    "model overrides train_step (or code called apply_gradients directly). Call "
    "optimizer.step(CurvatureOracle.from_keras(model, loss, x, y)) in your train_step, "
    "or use the default train_step."
)


class SecondOrderOptimizer(keras.optimizers.Optimizer):
    """Base class: one `step` per batch on an oracle linearized at the variables.

    Args:
      name: optimizer name.
    """

    # Whether `step` needs Gauss-Newton products (an oracle with an output/loss split).
    needs_gauss_newton = False
    # Whether `step` needs the layers of a Keras model (`Oracle.keras_batch`): a
    # mini-batch method that `minimize` does not offer.
    needs_keras_model = False

    def __init__(self, name: str = "second_order", **kwargs):
        super().__init__(learning_rate=1.0, name=name)
        # K-FAC factor state (`_kronecker_state.KroneckerState`) when the optimizer has
        # it: its variables are made at the first step, saved values wait here.
        self._kronecker: Any = None
        self._deferred_state: Optional[List[np.ndarray]] = None

    # ----------------------------------------------------------- state helpers
    def _scalar_state(self, name: str, value: float, dtype: str = "float64"):
        return self.add_variable(
            (), initializer=keras.initializers.Constant(value), dtype=dtype, name=name
        )

    @staticmethod
    def _read(variable) -> float:
        return float(np.asarray(variable))

    def _ensure_built(self, variables):
        if not self.built:
            self.build(list(variables))

    def _start(self, oracle):
        """Builds if needed; returns ``(problem, value, gradient, finite)`` at the point."""
        self._ensure_built(oracle.variables)
        problem = FlatProblem(oracle)
        value, gradient = problem.value(), problem.gradient()
        finite = math.isfinite(value) and bool(np.all(np.isfinite(gradient.numpy())))
        return problem, value, gradient, finite

    # ----------------------------------------------------------- API
    def step(self, oracle, curvature_oracle=None, **kwargs) -> StepResult:
        """Takes one step from the oracle's point; returns what it did.

        The `StepResult` says whether the variables moved (``accepted``) and,
        when the oracle is already linearized at the new variables,
        ``linearized=True`` (a rejected step leaves the oracle at its point: only
        ``evaluate`` ran).
        If anything raises during the step (a ``KeyboardInterrupt`` too), the
        variables are put back where the step started before the exception
        propagates: they never stay at an unaccepted trial point.
        """
        self._ensure_built(oracle.variables)
        with restore_on_exception(oracle.variables):
            return self._step(oracle, curvature_oracle, **kwargs)

    def _step(self, oracle, curvature_oracle=None) -> StepResult:
        raise NotImplementedError

    def load_own_variables(self, store):
        """Loads the saved state; K-FAC factor state, whose variables depend on the
        model's layers and are made at the first step, waits until then."""
        count = len(store.keys())
        waiting = self._kronecker is not None and self._kronecker.factors is None
        if waiting and self.built and count > len(self.variables):
            for i, variable in enumerate(self.variables):
                variable.assign(store[str(i)])
            self._deferred_state = [
                np.asarray(store[str(i)]) for i in range(len(self.variables), count)
            ]
            return
        super().load_own_variables(store)

    def apply(self, grads, trainable_variables=None):
        raise RuntimeError(FIRST_ORDER_MESSAGE.format(name=type(self).__name__))

    def _config(self) -> Dict[str, Any]:
        raise NotImplementedError

    def get_config(self) -> Dict[str, Any]:
        return dict(self._config(), name=self.name)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        accepted = inspect.signature(cls.__init__).parameters
        return cls(**{k: v for k, v in config.items() if k in accepted})

    @staticmethod
    def _check_positive(name, value, allow_zero=False):
        ok = value >= 0 if allow_zero else value > 0
        if not ok or not math.isfinite(value):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"`{name}` must be finite and {bound}, got {value}.")


@contextlib.contextmanager
def restore_on_exception(variables: Sequence[tf.Variable]):
    """Puts ``variables`` back to their values at entry if the block raises.

    ``BaseException``: an interrupt (Ctrl-C) during a trial evaluation must not
    leave the weights at the trial point.
    """
    saved = [tf.identity(tf.convert_to_tensor(v)) for v in variables]
    try:
        yield
    except BaseException:
        for variable, value in zip(variables, saved):
            variable.assign(value)
        raise
