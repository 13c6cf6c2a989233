"""Line-search Newton-CG (scipy's ``Newton-CG``): truncated CG, then a Wolfe line search."""

import math
from typing import Any, Dict

import keras
import numpy as np
import tensorflow as tf

from ctc_newton.optimizers import cg
from ctc_newton.optimizers._flat import FlatProblem
from ctc_newton.optimizers._truncated_newton import TruncatedNewton
from ctc_newton.optimizers.step_result import StepResult


@keras.saving.register_keras_serializable(package="ctc_newton")
class LineSearchNewtonCG(TruncatedNewton):
    """Newton-CG with a line search, on the exact (possibly indefinite) Hessian.

    Follows scipy's ``Newton-CG``: CG on ``H p = -g`` with forcing term
    ``min(0.5, sqrt(|g|_1))``, stopping at negative curvature (steepest descent
    if met first), then scipy's Wolfe line search (MINPACK, then a fallback).
    A failed line search leaves the variables where they were.

    Args:
      max_cg_iterations: CG cap (default ``20 n``, scipy's, capped at 250 for large n).
      name: module name.
    """

    def __init__(self, max_cg_iterations=None, name: str = "newton_cg"):
        super().__init__(max_cg_iterations=max_cg_iterations, name=name)

    def _config(self):
        return dict(max_cg_iterations=self.max_cg_iterations)

    def _newton_step(self, problem, value, gradient):
        from scipy.optimize import line_search

        try:  # the exact search scipy's Newton-CG uses (MINPACK, then a fallback)
            from scipy.optimize._optimize import _line_search_wolfe12 as search
        except ImportError:  # pragma: no cover - older/newer scipy layouts
            search = None
        x = problem.position()
        eps = float(np.finfo(np.float64).eps)
        cap = self._cg_cap(int(x.shape[0]))

        def solve(o, gradient):
            return cg.truncated(FlatProblem(o).product("hessian"), gradient, cap, 3 * eps)

        solution = problem.oracle.solve(("truncated", cap), solve, gradient)
        record: Dict[str, Any] = dict(
            cg_iterations=int(solution.iterations),
            negative_curvature=bool(solution.negative_curvature),
        )
        if bool(solution.nonfinite):
            return StepResult.rejected(value, "non-finite Hessian product; step rejected", **record)
        p = solution.step.numpy().astype(np.float64)
        x0 = x.numpy().astype(np.float64)
        oracle = problem.oracle
        cache = {}
        linearized_at = None  # the point the oracle was last linearized at

        def f(z):
            nonlocal linearized_at
            key = z.tobytes()
            if key not in cache:
                problem.assign(tf.constant(z, problem.dtype))
                oracle.linearize()
                linearized_at = key
                v = float(oracle.value())
                g = problem.gradient().numpy().astype(np.float64)
                cache[key] = (v if math.isfinite(v) else np.inf, g)
            return cache[key][0]

        def fprime(z):
            f(z)
            return cache[z.tobytes()][1]

        g0 = gradient.numpy().astype(np.float64)
        old_old = getattr(self, "_previous_value", None)
        try:
            if search is not None:
                alpha, *_ = search(f, fprime, x0, p, g0, value, old_old)
            else:
                alpha = line_search(f, fprime, x0, p, g0, value, old_old)[0]
        except Exception:  # noqa: BLE001 - scipy raises _LineSearchError on failure
            alpha = None
        if alpha is None or not np.isfinite(alpha):
            problem.assign(x)
            oracle.linearize()
            return StepResult.rejected(value, "line search failed", **record)
        self._previous_value = value
        x_new = x0 + alpha * p
        trial = f(x_new)
        problem.assign(tf.constant(x_new, problem.dtype))
        if linearized_at != x_new.tobytes():
            oracle.linearize()
        return StepResult(
            value=value,
            accepted=True,
            step_size=float(alpha),
            rho=math.nan,
            value_after=trial,
            update_l1=float(np.sum(np.abs(alpha * p))),
            linearized=True,
            **record,
        )
