"""Levenberg-Marquardt: damped Gauss-Newton with Marquardt's diagonal scaling.

On a least-squares oracle (`CurvatureOracle.from_residuals`) with few parameters
each step solves ``(J^T J + lambda D) p = -J^T r`` densely (Cholesky), with
``D`` the running maximum of ``diag(J^T J)`` (More 1978: invariant to the
parameters' scales, never shrinking). Otherwise (many parameters, or a model and
loss, e.g. ``model.compile(loss="mse")``) it solves ``(G + lambda I) p = -g``
by CG on Gauss-Newton products. ``lambda`` follows Nielsen's rule.
"""

import collections
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ctc_newton.optimizers.gauss_newton import GaussNewton

DenseSolution = collections.namedtuple(
    "DenseSolution", ["step", "model_value", "scale", "nonfinite", "iterations"]
)


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
    system = tf.where(finite, gauss_newton, tf.zeros_like(gauss_newton)) + tf.linalg.diag(
        damping * diagonal
    )
    step = -tf.linalg.cholesky_solve(tf.linalg.cholesky(system), gradient[:, tf.newaxis])[:, 0]
    model_value = tf.reduce_sum(gradient * step) + 0.5 * tf.reduce_sum(
        step * tf.linalg.matvec(gauss_newton, step)
    )
    nonfinite = ~(finite & tf.reduce_all(tf.math.is_finite(step)))
    return DenseSolution(step, model_value, scale, nonfinite, tf.constant(0))


@keras.saving.register_keras_serializable(package="ctc_newton")
class LevenbergMarquardt(GaussNewton):
    """Levenberg-Marquardt on residuals (dense) or on Gauss-Newton products (CG).

    `GaussNewton` with Nielsen's rule, plus the dense Marquardt-scaled step on
    least-squares oracles with at most ``dense_limit`` parameters. ``rho``
    compares the actual change with the undamped quadratic model; the step is
    taken when the loss decreases. A non-finite loss, gradient, Jacobian or trial
    loss rejects the step and raises ``lambda``.

    Args:
      damping: initial ``lambda`` (> 0); relative to ``D`` on the dense path.
      dense_limit: largest parameter count solved densely (least-squares oracles).
      max_cg_iterations: CG cap on the matrix-free path.
      cg_tolerance: CG stops at ``|r| <= cg_tolerance |g|``.
      min_damping: floor for ``lambda``.
      name: module name.
    """

    def __init__(
        self,
        damping: float = 1e-3,
        dense_limit: int = 4000,
        max_cg_iterations: int = 250,
        cg_tolerance: float = 1e-10,
        min_damping: float = 1e-15,
        name: str = "levenberg_marquardt",
    ):
        super().__init__(
            damping=damping,
            rule="nielsen",
            max_cg_iterations=max_cg_iterations,
            cg_tolerance=cg_tolerance,
            min_damping=min_damping,
            name=name,
        )
        if dense_limit < 0:
            raise ValueError(f"`dense_limit` must be >= 0, got {dense_limit}.")
        self.dense_limit = dense_limit
        self.scale: Any = None  # keras.Variable, made by build (the problem's size)

    def build(self, variables):
        super().build(variables)
        size = int(sum(np.prod(v.shape) for v in variables))
        self.scale = self.add_variable((size,), dtype="float64", name="marquardt_scale")

    def _config(self):
        config = dict(super()._config(), dense_limit=self.dense_limit)
        del config["rule"]
        return config

    def _solve(self, oracle, gradient, damping):
        if not (oracle.supports_residual_jacobian and int(gradient.shape[0]) <= self.dense_limit):
            return super()._solve(oracle, gradient, damping)
        scale = tf.cast(tf.convert_to_tensor(self.scale), gradient.dtype)
        solution = oracle.solve(
            ("levenberg_marquardt_dense",),
            dense_step,
            gradient,
            tf.constant(damping, gradient.dtype),
            scale,
        )
        nonfinite = bool(solution.nonfinite)
        if not nonfinite:
            self.scale.assign(tf.cast(solution.scale, self.scale.dtype))
        return solution.step, float(solution.model_value), nonfinite, 0
