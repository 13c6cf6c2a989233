"""Levenberg-Marquardt: damped Gauss-Newton with Marquardt's diagonal scaling.

On a least-squares oracle (`CurvatureOracle.from_residuals`) with few parameters
each step solves ``(J^T J + lambda D) p = -J^T r`` densely (Cholesky), with
``D`` the running maximum of ``diag(J^T J)`` (More 1978: invariant to the
parameters' scales, never shrinking). Otherwise (many parameters, or a model and
loss, e.g. ``model.compile(loss="mse")``) it solves ``(G + lambda I) p = -g``
by CG on Gauss-Newton products. ``lambda`` follows Nielsen's rule.
"""

import collections
import math

import keras
import numpy as np
import tensorflow as tf

from ctc_newton.optimizers import cg
from ctc_newton.optimizers._flat import FlatProblem
from ctc_newton.optimizers.base import SecondOrderOptimizer
from ctc_newton.optimizers.damping import nielsen_update, reduction_ratio
from ctc_newton.optimizers.step_result import StepResult

DenseSolution = collections.namedtuple(
    "DenseSolution", ["step", "model_value", "scale", "nonfinite", "iterations"])


def dense_step(oracle, gradient, damping, scale) -> DenseSolution:
    """The Levenberg-Marquardt step from the dense residual Jacobian at the point.

    Args:
      oracle: a least-squares tape oracle.
      gradient: ``[n]`` ``J^T r``.
      damping: ``lambda``.
      scale: ``[n]`` the running maximum of ``diag(J^T J)`` so far (zeros at first).

    Returns:
      A `DenseSolution`: the step, the undamped model change ``g^T p + 1/2 p^T J^T J
      p``, the updated scale, whether anything was non-finite, and 0 CG iterations.
    """
    jacobian, _ = oracle.residual_jacobian()
    jacobian = tf.cast(jacobian, gradient.dtype)
    gauss_newton = tf.matmul(jacobian, jacobian, transpose_a=True)
    scale = tf.maximum(scale, tf.linalg.diag_part(gauss_newton))
    diagonal = tf.where(scale > 0, scale, tf.ones_like(scale))  # parameters with no effect
    finite = tf.reduce_all(tf.math.is_finite(gauss_newton))
    system = tf.where(finite, gauss_newton, tf.zeros_like(gauss_newton)) + \
        tf.linalg.diag(damping * diagonal)
    step = -tf.linalg.cholesky_solve(tf.linalg.cholesky(system), gradient[:, tf.newaxis])[:, 0]
    model_value = tf.reduce_sum(gradient * step) + \
        0.5 * tf.reduce_sum(step * tf.linalg.matvec(gauss_newton, step))
    nonfinite = ~(finite & tf.reduce_all(tf.math.is_finite(step)))
    return DenseSolution(step, model_value, scale, nonfinite, tf.constant(0))


@keras.saving.register_keras_serializable(package="ctc_newton")
class LevenbergMarquardt(SecondOrderOptimizer):
    """Levenberg-Marquardt on residuals (dense) or on Gauss-Newton products (CG).

    ``rho`` compares the actual change with the undamped quadratic model; the
    step is taken when the loss decreases (``rho > 0``). A non-finite loss,
    gradient, Jacobian or trial loss rejects the step and raises ``lambda``.

    Args:
      damping: initial ``lambda`` (> 0), relative to the diagonal ``D``.
      dense_limit: largest parameter count solved densely (least-squares oracles).
      max_cg_iterations: CG cap on the matrix-free path.
      cg_tolerance: CG stops at ``|r| <= cg_tolerance |g|``.
      min_damping: floor for ``lambda``.
      name: module name.
    """

    needs_gauss_newton = True

    def __init__(self, damping: float = 1e-3, dense_limit: int = 4000,
                 max_cg_iterations: int = 250, cg_tolerance: float = 1e-10,
                 min_damping: float = 1e-15, name: str = "levenberg_marquardt"):
        super().__init__(name=name)
        self._check_positive("damping", damping)
        self._check_positive("min_damping", min_damping, allow_zero=True)
        if dense_limit < 0:
            raise ValueError(f"`dense_limit` must be >= 0, got {dense_limit}.")
        if max_cg_iterations < 1:
            raise ValueError(f"`max_cg_iterations` must be >= 1, got {max_cg_iterations}.")
        self.initial_damping = damping
        self.dense_limit = dense_limit
        self.max_cg_iterations = max_cg_iterations
        self.cg_tolerance = cg_tolerance
        self.min_damping = min_damping
        self.damping = self._scalar_state("damping", damping)
        self.nu = self._scalar_state("nu", 2.0)
        self.scale = None  # created by build (the size of the problem)

    def build(self, variables):
        super().build(variables)
        size = int(sum(np.prod(v.shape) for v in variables))
        self.scale = self.add_variable((size,), dtype="float64", name="marquardt_scale")

    def _config(self):
        return dict(damping=self.initial_damping, dense_limit=self.dense_limit,
                    max_cg_iterations=self.max_cg_iterations, cg_tolerance=self.cg_tolerance,
                    min_damping=self.min_damping)

    def _adapt(self, rho):
        damping, nu = nielsen_update(self._read(self.damping), self._read(self.nu), rho)
        self.nu.assign(nu)
        self.damping.assign(max(damping, self.min_damping))

    def _solve(self, oracle, gradient, damping):
        if oracle.supports_residual_jacobian and int(gradient.shape[0]) <= self.dense_limit:
            scale = tf.cast(tf.convert_to_tensor(self.scale), gradient.dtype)
            solution = oracle.solve(("levenberg_marquardt_dense",), dense_step, gradient,
                                    tf.constant(damping, gradient.dtype), scale)
            if not bool(solution.nonfinite):
                self.scale.assign(tf.cast(solution.scale, self.scale.dtype))
            return solution.step, solution.model_value, solution.nonfinite, 0
        max_iterations, tolerance = self.max_cg_iterations, self.cg_tolerance

        def solve(o, gradient, damping):
            curvature = FlatProblem(o).product("gauss_newton")
            return cg.martens(lambda v: curvature(v) + damping * v, -gradient,
                              tf.zeros_like(gradient), max_iterations, tolerance=tolerance)

        solution = oracle.solve(("levenberg_marquardt_cg", max_iterations, tolerance), solve,
                                gradient, tf.constant(damping, gradient.dtype))
        # CG's model value includes the damping term; the ratio wants the undamped one.
        model_value = float(solution.model_value) - \
            0.5 * damping * float(tf.reduce_sum(solution.step ** 2))
        return solution.step, model_value, solution.nonfinite, int(solution.iterations)

    def _step(self, oracle, curvature_oracle=None):
        problem, value, gradient, finite = self._start(oracle)
        if not finite:
            self._adapt(math.nan)
            return StepResult.rejected(value, "non-finite loss or gradient; damping raised")
        if not bool(tf.reduce_any(gradient != 0)):
            return StepResult.stationary(value)
        self.iterations.assign_add(1)
        damping = self._read(self.damping)
        x = problem.position()
        step, model_value, nonfinite, iterations = self._solve(
            curvature_oracle or oracle, gradient, damping)
        record = dict(damping=damping, cg_iterations=iterations)
        if bool(nonfinite):
            self._adapt(math.nan)
            return StepResult.rejected(value, "non-finite Jacobian or curvature product; "
                                       "damping raised", **record)
        trial = problem.value_at(x + step)
        rho = reduction_ratio(trial - value, float(model_value))
        self._adapt(rho)
        accepted = math.isfinite(trial) and trial < value
        problem.settle(accepted, x)
        return StepResult(value=value, accepted=accepted, rho=rho,
                          step_size=float(tf.norm(step)),
                          value_after=trial if accepted else value,
                          note="" if math.isfinite(trial) else "non-finite trial loss; rejected",
                          **record)
