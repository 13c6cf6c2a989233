"""Truncated Newton on the exact Hessian: trust-region (Steihaug-Toint CG) or line search."""

import math
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from ctc_newton.optimizers import cg
from ctc_newton.optimizers._flat import FlatProblem
from ctc_newton.optimizers.base import SecondOrderOptimizer, nonfinite_record, stationary_record
from ctc_newton.optimizers.damping import reduction_ratio


@keras.saving.register_keras_serializable(package="ctc_newton")
class NewtonCG(SecondOrderOptimizer):
    """Newton-CG on the exact (possibly indefinite) Hessian.

    ``variant="trust-region"`` (default) follows scipy's ``trust-ncg``: Steihaug-Toint
    CG inside a radius that shrinks by 1/4 when ``rho < 1/4`` and doubles (up to
    ``max_radius``) when ``rho > 3/4`` on the boundary; the step is taken when
    ``rho > eta``. Negative curvature, as the exact CTC Hessian has, leads to the
    boundary. ``variant="line-search"`` follows scipy's ``Newton-CG``: forcing
    term ``min(0.5, sqrt(|g|_1))``, CG stops on negative curvature, then a Wolfe
    line search.

    Args:
      variant: ``"trust-region"`` or ``"line-search"``.
      initial_radius: first trust radius.
      max_radius: largest trust radius.
      eta: smallest ``rho`` that accepts a step.
      max_cg_iterations: CG cap (default ``20 n``, scipy's, capped at 250 for large n).
      name: module name.
    """

    def __init__(self, variant: str = "trust-region", initial_radius: float = 1.0,
                 max_radius: float = 1000.0, eta: float = 0.15,
                 max_cg_iterations: Optional[int] = None, name: str = "newton_cg"):
        super().__init__(name=name)
        if variant not in ("trust-region", "line-search"):
            raise ValueError(f"`variant` must be 'trust-region' or 'line-search', got "
                             f"{variant!r}.")
        self._check_positive("initial_radius", initial_radius)
        self._check_positive("max_radius", max_radius)
        if not 0 <= eta < 0.25:
            raise ValueError(f"`eta` must be in [0, 0.25), got {eta}.")
        if max_cg_iterations is not None and max_cg_iterations < 1:
            raise ValueError(f"`max_cg_iterations` must be >= 1, got {max_cg_iterations}.")
        self.variant = variant
        self.initial_radius = initial_radius
        self.max_radius = max_radius
        self.eta = eta
        self.max_cg_iterations = max_cg_iterations
        self.radius = self._scalar_state("radius", initial_radius)

    def _config(self):
        return dict(variant=self.variant, initial_radius=self.initial_radius,
                    max_radius=self.max_radius, eta=self.eta,
                    max_cg_iterations=self.max_cg_iterations)

    def _cg_cap(self, n):
        return self.max_cg_iterations or min(20 * n, max(250, n))

    def _step(self, oracle, curvature_oracle=None):
        problem, value, gradient, finite = self._start(oracle)
        if not finite:
            self.radius.assign(self._read(self.radius) * 0.25)
            return nonfinite_record(value, "non-finite loss or gradient; radius shrunk")
        if not bool(tf.reduce_any(gradient != 0)):
            return stationary_record(value)
        self.iterations.assign_add(1)
        if self.variant == "trust-region":
            return self._trust_region_step(problem, value, gradient)
        return self._line_search_step(problem, value, gradient)

    def _trust_region_step(self, problem, value, gradient):
        x = problem.position()
        radius = self._read(self.radius)
        cap = self._cg_cap(int(x.shape[0]))

        def solve(o, gradient, radius):
            return cg.steihaug(FlatProblem(o).product("hessian"), gradient, radius, cap)

        solution = problem.oracle.solve(("steihaug", cap), solve, gradient,
                                        tf.constant(radius, gradient.dtype))
        record = {"value": value, "radius": radius, "cg_iterations": int(solution.iterations),
                  "negative_curvature": bool(solution.negative_curvature)}
        if bool(solution.nonfinite):
            self.radius.assign(radius * 0.25)
            return dict(record, accepted=False, step_size=0.0, rho=float("nan"),
                        note="non-finite Hessian product; radius shrunk")
        p = solution.step
        trial = problem.value_at(x + p)
        rho = reduction_ratio(trial - value, float(solution.model_value))
        if math.isnan(rho) or rho < 0.25:
            self.radius.assign(radius * 0.25)
        elif rho > 0.75 and bool(solution.hits_boundary):
            self.radius.assign(min(2 * radius, self.max_radius))
        accepted = not math.isnan(rho) and rho > self.eta
        if not accepted:
            problem.assign(x)
        return dict(record, accepted=accepted, rho=rho, step_size=float(tf.norm(p)),
                    value_after=trial if accepted else value,
                    note="" if math.isfinite(trial) else "non-finite trial loss; rejected")

    def _line_search_step(self, problem, value, gradient):
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
        record = {"value": value, "cg_iterations": int(solution.iterations),
                  "negative_curvature": bool(solution.negative_curvature)}
        if bool(solution.nonfinite):
            return dict(record, accepted=False, step_size=0.0, rho=float("nan"),
                        note="non-finite Hessian product; step rejected")
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
            return dict(record, accepted=False, step_size=0.0, rho=float("nan"),
                        note="line search failed")
        self._previous_value = value
        x_new = x0 + alpha * p
        trial = f(x_new)
        problem.assign(tf.constant(x_new, problem.dtype))
        if linearized_at != x_new.tobytes():
            oracle.linearize()
        return dict(record, accepted=True, step_size=float(alpha), rho=float("nan"),
                    value_after=trial, update_l1=float(np.sum(np.abs(alpha * p))),
                    linearized=True)
