"""Damped Gauss-Newton with Levenberg-Marquardt adaptation of the damping."""

import math
from typing import Any, Dict, Optional

import keras
import tensorflow as tf

from ctc_newton.optimizers import cg
from ctc_newton.optimizers._flat import FlatProblem
from ctc_newton.optimizers._kronecker_state import kfac_preconditioner_state
from ctc_newton.optimizers.base import SecondOrderOptimizer
from ctc_newton.optimizers.step_result import StepResult
from ctc_newton.optimizers.damping import martens_update, nielsen_update, reduction_ratio


@keras.saving.register_keras_serializable(package="ctc_newton")
class GaussNewton(SecondOrderOptimizer):
    """Levenberg-Marquardt: solve ``(G + lambda I) p = -g`` by CG, adapt ``lambda``.

    ``G`` is the oracle's generalized Gauss-Newton (PSD; for CTC the CTC
    Gauss-Newton). ``rho`` compares the actual change with the *undamped*
    quadratic model ``q(p) = g^T p + 1/2 p^T G p`` at the CG solution. The step is
    taken when the loss decreases (``rho > 0``); a non-finite loss, gradient or
    curvature product rejects it and raises ``lambda``.

    Args:
      damping: initial ``lambda`` (> 0).
      rule: ``"martens"`` (``rho < 1/4``: x3/2, ``rho > 3/4``: x2/3) or ``"nielsen"``.
      max_cg_iterations: CG cap.
      cg_tolerance: CG stops at ``|r| <= cg_tolerance |g|`` (or Martens' rule).
      min_damping: floor for ``lambda``.
      preconditioner: None, or ``"kfac"``: CG preconditioned by K-FAC's damped
        Kronecker-factored inverse (statistics averaged over steps; needs an oracle
        of a Keras model, as ``fit`` builds).
      name: module name.
    """

    needs_gauss_newton = True

    def __init__(
        self,
        damping: float = 1.0,
        rule: str = "martens",
        max_cg_iterations: int = 250,
        cg_tolerance: float = 1e-10,
        min_damping: float = 1e-12,
        preconditioner: Optional[str] = None,
        name: str = "gauss_newton",
    ):
        super().__init__(name=name)
        self._check_positive("damping", damping)
        self._check_positive("min_damping", min_damping, allow_zero=True)
        if rule not in ("martens", "nielsen"):
            raise ValueError(f"`rule` must be 'martens' or 'nielsen', got {rule!r}.")
        if max_cg_iterations < 1:
            raise ValueError(f"`max_cg_iterations` must be >= 1, got {max_cg_iterations}.")
        if preconditioner not in (None, "kfac"):
            raise ValueError(f"`preconditioner` must be None or 'kfac', got {preconditioner!r}.")
        self.preconditioner = preconditioner
        if preconditioner == "kfac":
            self._kronecker = kfac_preconditioner_state(self)
        self.initial_damping = damping
        self.rule = rule
        self.max_cg_iterations = max_cg_iterations
        self.cg_tolerance = cg_tolerance
        self.min_damping = min_damping
        self.damping = self._scalar_state("damping", damping)
        self.nu = self._scalar_state("nu", 2.0)

    def _config(self):
        return dict(
            damping=self.initial_damping,
            rule=self.rule,
            max_cg_iterations=self.max_cg_iterations,
            cg_tolerance=self.cg_tolerance,
            min_damping=self.min_damping,
            preconditioner=self.preconditioner,
        )

    def _adapt(self, rho):
        damping = self._read(self.damping)
        if self.rule == "martens":
            damping = martens_update(damping, rho)
        else:
            damping, nu = nielsen_update(damping, self._read(self.nu), rho)
            self.nu.assign(nu)
        self.damping.assign(max(damping, self.min_damping))

    def _solve(self, oracle, gradient, damping):
        """``(step, undamped model change, non-finite?, CG iterations)`` for ``lambda``."""
        max_iterations, tolerance = self.max_cg_iterations, self.cg_tolerance
        kronecker = self._kronecker

        def solve(o, gradient, damping):
            curvature = FlatProblem(o).product("gauss_newton")
            return cg.martens(
                lambda v: curvature(v) + damping * v,
                -gradient,
                tf.zeros_like(gradient),
                max_iterations,
                None if kronecker is None else kronecker.preconditioner(damping),
                tolerance=tolerance,
            )

        solution = oracle.solve(
            ("gauss_newton", max_iterations, tolerance, kronecker is not None),
            solve,
            gradient,
            tf.constant(damping, gradient.dtype),
        )
        p = solution.step
        # CG's model value includes the damping term; rho compares with the undamped one.
        predicted = float(solution.model_value) - 0.5 * damping * float(tf.reduce_sum(p * p))
        return p, predicted, bool(solution.nonfinite), int(solution.iterations)

    def _step(self, oracle, curvature_oracle=None):
        problem, value, gradient, finite = self._start(oracle)
        if not finite:
            self._adapt(float("nan"))
            return StepResult.rejected(value, "non-finite loss or gradient; damping raised")
        if not bool(tf.reduce_any(gradient != 0)):
            return StepResult.stationary(value)
        damping = self._read(self.damping)
        if self._kronecker is not None:
            failure = self._kronecker.update(oracle, int(self.iterations.numpy()))
            if failure is not None:
                self._adapt(float("nan"))
                return StepResult.rejected(value, f"{failure}; damping raised", damping=damping)
        self.iterations.assign_add(1)
        x = problem.position()
        p, predicted, nonfinite, iterations = self._solve(
            curvature_oracle or oracle, gradient, damping
        )
        record: Dict[str, Any] = dict(damping=damping, cg_iterations=iterations)
        if nonfinite:
            self._adapt(float("nan"))
            return StepResult.rejected(
                value, "non-finite curvature product; damping raised", **record
            )
        trial = problem.value_at(x + p)
        rho = reduction_ratio(trial - value, predicted)
        self._adapt(rho)
        accepted = math.isfinite(trial) and trial < value
        problem.settle(accepted, x)
        return StepResult.from_trial(value, trial, accepted, rho, float(tf.norm(p)), **record)
