"""Hessian-free optimization, Martens' recipe in full.

Martens 2010 (ICML), Martens & Sutskever 2011/2012. Per step:

1. gradient ``g`` on the (large) gradient batch;
2. CG on ``(G + lambda I [+ lambda mu G_S]) p = -g`` with ``G`` the Gauss-Newton
   on the curvature batch, warm-started from ``0.95 x`` the previous (non-
   backtracked) CG solution, preconditioned by ``(diag(sum_i g_i^2) + lambda)^0.75``,
   stopped by Martens' relative-progress rule (at most 250 iterations);
3. CG-iteration backtracking over the iterates kept at ``ceil(1.3^j)``: walk back
   from the last while the loss keeps improving;
4. ``rho = (f(theta + p) - f(theta)) / (q(p) - q(0))`` with ``q`` the *undamped*
   Gauss-Newton model at the backtracked ``p``; ``rho < 1/4``: ``lambda *= 3/2``,
   ``rho > 3/4``: ``lambda *= 2/3``; a NaN ``rho`` is a failure;
5. Armijo backtracking ``alpha in {1, 0.8, 0.8^2, ...}``, ``c = 1e-2``; giving up
   means ``alpha = 0`` (no move).
"""

import math
import warnings
from typing import Any, Dict, Union

import keras
import numpy as np
import tensorflow as tf

from ctc_newton.curvature import flatten
from ctc_newton.optimizers import cg
from ctc_newton.optimizers._flat import FlatProblem
from ctc_newton.optimizers._kronecker_state import kfac_preconditioner_state
from ctc_newton.optimizers.base import SecondOrderOptimizer
from ctc_newton.optimizers.step_result import StepResult
from ctc_newton.optimizers.damping import martens_update, reduction_ratio


@keras.saving.register_keras_serializable(package="ctc_newton")
class HessianFree(SecondOrderOptimizer):
    """Martens' Hessian-free optimizer (see the module docstring for the recipe).

    Args:
      damping: initial ``lambda`` (> 0).
      max_cg_iterations: CG cap (Martens: 250).
      cg_epsilon: Martens' CG stopping tolerance (5e-4).
      warm_start: decay of the previous CG solution used as the start (0.95; 0 off).
      preconditioner: True: Martens' ``(diag(sum_i g_i^2) + lambda)^0.75`` (when the
        oracle has per-example structure); ``"kfac"``: K-FAC's damped
        Kronecker-factored inverse (`ctc_newton.optimizers.KFAC`'s curvature,
        statistics averaged over steps; needs an oracle of a Keras model, as ``fit``
        builds); False: none.
      armijo: sufficient-decrease constant ``c`` (1e-2).
      step_decay: factor of the line search (0.8).
      max_line_search_steps: how far the line search backs off before giving up.
      structural_damping: ``mu`` of structural damping (0: off); needs
        ``structural_oracle`` in `step` (Gauss-Newton of a penalty on hidden states).
      min_damping: floor for ``lambda``.
      name: module name.
    """

    needs_gauss_newton = True

    def __init__(
        self,
        damping: float = 1.0,
        max_cg_iterations: int = 250,
        cg_epsilon: float = 5e-4,
        warm_start: float = 0.95,
        preconditioner: Union[bool, str] = True,
        armijo: float = 1e-2,
        step_decay: float = 0.8,
        max_line_search_steps: int = 60,
        structural_damping: float = 0.0,
        min_damping: float = 1e-8,
        name: str = "hessian_free",
    ):
        super().__init__(name=name)
        self._check_positive("damping", damping)
        self._check_positive("cg_epsilon", cg_epsilon)
        self._check_positive("structural_damping", structural_damping, allow_zero=True)
        self._check_positive("min_damping", min_damping, allow_zero=True)
        if max_cg_iterations < 1:
            raise ValueError(f"`max_cg_iterations` must be >= 1, got {max_cg_iterations}.")
        if not 0 <= warm_start < 1:
            raise ValueError(f"`warm_start` must be in [0, 1), got {warm_start}.")
        if not 0 < armijo < 1 or not 0 < step_decay < 1:
            raise ValueError("`armijo` and `step_decay` must be in (0, 1).")
        if max_line_search_steps < 1:
            raise ValueError(
                "`max_line_search_steps` must be >= 1 (the line search tries "
                f"alpha = 1 first), got {max_line_search_steps}."
            )
        if preconditioner not in (True, False, "kfac"):
            raise ValueError(
                f"`preconditioner` must be True, False or 'kfac', got {preconditioner!r}."
            )
        self.initial_damping = damping
        self.max_cg_iterations = max_cg_iterations
        self.cg_epsilon = cg_epsilon
        self.warm_start = warm_start
        self.preconditioner = preconditioner
        self.armijo = armijo
        self.step_decay = step_decay
        self.max_line_search_steps = max_line_search_steps
        self.structural_damping = structural_damping
        self.min_damping = min_damping
        self.damping = self._scalar_state("damping", damping)
        self.previous_solution: Any = None  # keras.Variable, made by build (problem size)
        if preconditioner == "kfac":
            self._kronecker = kfac_preconditioner_state(self)

    def build(self, variables):
        super().build(variables)
        size = int(sum(np.prod(v.shape) for v in variables))
        self.previous_solution = self.add_variable(
            (size,), dtype="float64", name="previous_cg_solution"
        )

    def _config(self):
        return dict(
            damping=self.initial_damping,
            max_cg_iterations=self.max_cg_iterations,
            cg_epsilon=self.cg_epsilon,
            warm_start=self.warm_start,
            preconditioner=self.preconditioner,
            armijo=self.armijo,
            step_decay=self.step_decay,
            max_line_search_steps=self.max_line_search_steps,
            structural_damping=self.structural_damping,
            min_damping=self.min_damping,
        )

    def _raise_damping(self):
        self.damping.assign(martens_update(self._read(self.damping), float("nan")))

    def _preconditioner(self, oracle, damping, dtype):
        if not self.preconditioner or self.preconditioner == "kfac":
            return None  # K-FAC's is applied inside the solve
        if not oracle.supports_squared_gradients:  # run unpreconditioned; say so once
            if not getattr(self, "_warned_preconditioner", False):
                warnings.warn(
                    f"{self.name}: running without the preconditioner: "
                    f"{oracle.squared_gradients_unsupported_reason()}",
                    stacklevel=4,
                )
                self._warned_preconditioner = True
            return None
        squared = flatten(oracle.squared_gradient_diagonal())
        return tf.pow(tf.cast(squared, dtype) + damping, 0.75)

    # It takes structural_oracle by name where the base accepts **kwargs.
    def step(  # type: ignore[override]
        self, oracle, curvature_oracle=None, structural_oracle=None
    ) -> StepResult:
        """One Hessian-free step (variables restored if it raises).

        Args:
          oracle: linearized on the gradient batch at the current variables.
          curvature_oracle: linearized on the curvature batch (default: ``oracle``).
          structural_oracle: Gauss-Newton of the hidden-state penalty (needed when
            ``structural_damping > 0``).

        Returns:
          A `StepResult`.
        """
        return super().step(oracle, curvature_oracle, structural_oracle=structural_oracle)

    def _step(self, oracle, curvature_oracle=None, structural_oracle=None):
        problem, value, gradient, finite = self._start(oracle)
        if not finite:
            self._raise_damping()
            return StepResult.rejected(value, "non-finite loss or gradient; damping raised")
        if self.structural_damping > 0 and structural_oracle is None:
            raise ValueError("`structural_damping` > 0 needs `structural_oracle`.")
        if not bool(tf.reduce_any(gradient != 0)):
            return StepResult.stationary(value)
        damping = self._read(self.damping)
        if self._kronecker is not None:
            failure = self._kronecker.update(oracle, int(self.iterations.numpy()))
            if failure is not None:
                self._raise_damping()
                return StepResult.rejected(value, f"{failure}; damping raised", damping=damping)
        self.iterations.assign_add(1)
        x0 = self.warm_start * tf.cast(tf.convert_to_tensor(self.previous_solution), problem.dtype)
        max_iterations, epsilon, mu = (
            self.max_cg_iterations,
            self.cg_epsilon,
            self.structural_damping,
        )
        kronecker = self._kronecker

        def solve(o, gradient, damping, x0, preconditioner, structural=None):
            curvature = FlatProblem(o).product("gauss_newton")
            if kronecker is not None:
                preconditioner = kronecker.preconditioner(damping)

            def apply(v):
                out = curvature(v) + damping * v
                if structural is not None:
                    out = out + damping * mu * structural(v)
                return out

            return cg.martens(apply, -gradient, x0, max_iterations, preconditioner, epsilon)

        curvature_oracle = curvature_oracle or oracle
        args = (
            gradient,
            tf.constant(damping, problem.dtype),
            x0,
            self._preconditioner(oracle, damping, problem.dtype),
        )
        if self.structural_damping > 0:  # products of two oracles: CG on the host
            solution = solve(
                curvature_oracle,
                *args,
                structural=FlatProblem(structural_oracle).product("gauss_newton"),
            )
        else:
            key = ("martens", max_iterations, epsilon, kronecker is not None)
            solution = curvature_oracle.solve(key, solve, *args)
        record: Dict[str, Any] = dict(damping=damping, cg_iterations=int(solution.iterations))
        iterates = solution.iterates()
        if bool(solution.nonfinite) or not iterates:
            self._raise_damping()
            return StepResult.rejected(
                value, "non-finite curvature product; damping raised", **record
            )
        self.previous_solution.assign(tf.cast(solution.step, self.previous_solution.dtype))
        x = problem.position()
        chosen, chosen_value = self._backtrack(problem, x, iterates)
        _, p, phi = chosen
        predicted = phi - 0.5 * damping * float(tf.reduce_sum(p * p))
        rho = reduction_ratio(chosen_value - value, predicted)
        self.damping.assign(max(martens_update(damping, rho), self.min_damping))
        alpha, new_value = self._line_search(problem, x, p, value, gradient, chosen_value)
        problem.settle(alpha > 0, x)
        return StepResult(
            value=value,
            accepted=alpha > 0,
            rho=rho,
            step_size=alpha,
            value_after=new_value,
            backtracked_to=chosen[0],
            note="" if alpha > 0 else "line search gave up; no move",
            **record,
        )

    @staticmethod
    def _backtrack(problem, x, iterates):
        """From the last kept CG iterate, walk back while the loss improves."""
        index = len(iterates) - 1
        best_value = problem.value_at(x + iterates[index][1])
        while index > 0:
            candidate = problem.value_at(x + iterates[index - 1][1])
            if not candidate < best_value:
                break
            index, best_value = index - 1, candidate
        return iterates[index], best_value if math.isfinite(best_value) else float("inf")

    def _line_search(self, problem, x, p, value, gradient, value_at_one):
        slope = float(tf.reduce_sum(gradient * p))
        alpha, trial = 1.0, value_at_one
        for _ in range(self.max_line_search_steps):
            if math.isfinite(trial) and trial <= value + self.armijo * alpha * slope:
                problem.assign(x + alpha * p)
                return alpha, trial
            alpha *= self.step_decay
            trial = problem.value_at(x + alpha * p)
        return 0.0, value
