"""What scipy's two truncated-Newton methods share: the step skeleton and CG cap."""

from typing import Optional

import tensorflow as tf

from ctc_newton.optimizers.base import SecondOrderOptimizer
from ctc_newton.optimizers.step_result import StepResult


class TruncatedNewton(SecondOrderOptimizer):
    """Base of `LineSearchNewtonCG` and `TrustRegionNewtonCG` (exact Hessian, CG).

    Args:
      max_cg_iterations: CG cap (default ``20 n``, scipy's, capped at 250 for large n).
      name: module name.
    """

    def __init__(self, max_cg_iterations: Optional[int] = None, name: str = "newton_cg"):
        super().__init__(name=name)
        if max_cg_iterations is not None and max_cg_iterations < 1:
            raise ValueError(f"`max_cg_iterations` must be >= 1, got {max_cg_iterations}.")
        self.max_cg_iterations = max_cg_iterations

    def _cg_cap(self, n):
        return self.max_cg_iterations or min(20 * n, max(250, n))

    def _on_nonfinite(self) -> str:
        """State change after a non-finite loss or gradient; returns the note."""
        return "non-finite loss or gradient; step rejected"

    def _step(self, oracle, curvature_oracle=None):
        problem, value, gradient, finite = self._start(oracle)
        if not finite:
            return StepResult.rejected(value, self._on_nonfinite())
        if not bool(tf.reduce_any(gradient != 0)):
            return StepResult.stationary(value)
        self.iterations.assign_add(1)
        return self._newton_step(problem, value, gradient)

    def _newton_step(self, problem, value, gradient):
        raise NotImplementedError
