"""Trust-region Newton-CG (scipy's ``trust-ncg``): Steihaug-Toint CG on the exact Hessian."""

import math
from typing import Any, Dict, Optional

import keras
import tensorflow as tf

from ctc_newton.optimizers import cg
from ctc_newton.optimizers._flat import FlatProblem
from ctc_newton.optimizers._truncated_newton import TruncatedNewton
from ctc_newton.optimizers.damping import reduction_ratio
from ctc_newton.optimizers.step_result import StepResult


@keras.saving.register_keras_serializable(package="ctc_newton")
class TrustRegionNewtonCG(TruncatedNewton):
    """Newton-CG in a trust region, on the exact (possibly indefinite) Hessian.

    Follows scipy's ``trust-ncg``: Steihaug-Toint CG inside a radius that shrinks
    by 1/4 when ``rho < 1/4`` and doubles (up to ``max_radius``) when
    ``rho > 3/4`` on the boundary; the step is taken when ``rho > eta``. Negative
    curvature, as the exact CTC Hessian has, leads to the boundary. A non-finite
    loss, gradient or product rejects the step and shrinks the radius.

    Args:
      initial_radius: first trust radius.
      max_radius: largest trust radius.
      eta: smallest ``rho`` that accepts a step.
      max_cg_iterations: CG cap (default ``20 n``, scipy's, capped at 250 for large n).
      name: module name.
    """

    def __init__(
        self,
        initial_radius: float = 1.0,
        max_radius: float = 1000.0,
        eta: float = 0.15,
        max_cg_iterations: Optional[int] = None,
        name: str = "trust_ncg",
    ):
        super().__init__(max_cg_iterations=max_cg_iterations, name=name)
        self._check_positive("initial_radius", initial_radius)
        self._check_positive("max_radius", max_radius)
        if not 0 <= eta < 0.25:
            raise ValueError(f"`eta` must be in [0, 0.25), got {eta}.")
        self.initial_radius = initial_radius
        self.max_radius = max_radius
        self.eta = eta
        self.radius = self._scalar_state("radius", initial_radius)

    def _config(self):
        return dict(
            initial_radius=self.initial_radius,
            max_radius=self.max_radius,
            eta=self.eta,
            max_cg_iterations=self.max_cg_iterations,
        )

    def _on_nonfinite(self):
        self.radius.assign(self._read(self.radius) * 0.25)
        return "non-finite loss or gradient; radius shrunk"

    def _newton_step(self, problem, value, gradient):
        x = problem.position()
        radius = self._read(self.radius)
        cap = self._cg_cap(int(x.shape[0]))

        def solve(o, gradient, radius):
            return cg.steihaug(FlatProblem(o).product("hessian"), gradient, radius, cap)

        solution = problem.oracle.solve(
            ("steihaug", cap), solve, gradient, tf.constant(radius, gradient.dtype)
        )
        record: Dict[str, Any] = dict(
            radius=radius,
            cg_iterations=int(solution.iterations),
            negative_curvature=bool(solution.negative_curvature),
        )
        if bool(solution.nonfinite):
            self.radius.assign(radius * 0.25)
            return StepResult.rejected(value, "non-finite Hessian product; radius shrunk", **record)
        p = solution.step
        trial = problem.value_at(x + p)
        rho = reduction_ratio(trial - value, float(solution.model_value))
        if math.isnan(rho) or rho < 0.25:
            self.radius.assign(radius * 0.25)
        elif rho > 0.75 and bool(solution.hits_boundary):
            self.radius.assign(min(2 * radius, self.max_radius))
        accepted = not math.isnan(rho) and rho > self.eta
        problem.settle(accepted, x)
        return StepResult.from_trial(value, trial, accepted, rho, float(tf.norm(p)), **record)
