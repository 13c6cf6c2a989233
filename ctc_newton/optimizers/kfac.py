"""K-FAC: Kronecker-factored approximate curvature (Martens & Grosse 2015), for Keras 3.

Per step, on the batch's oracle:

1. the statistics of each block (`ctc_newton.curvature.kronecker`) from one
   forward and backward pass with output cotangents sampled from the model's
   predictive distribution (for CTC: a class per live frame), folded into
   running averages (decay ``min(1 - 1/k, statistics_decay)``);
2. every ``inverse_update_period`` steps, the eigendecompositions of the
   averaged factors;
3. the direction ``Delta = -F^-1 g`` with factored Tikhonov damping
   ``(A + pi gamma I) (x) (S + gamma / pi I)``, ``gamma = sqrt(lambda)``;
4. the update ``delta = alpha Delta + mu delta_prev`` minimizing the exact
   quadratic model ``g^T d + 1/2 d^T (G + lambda I) d`` over ``alpha`` and ``mu``
   (momentum, section 7; two Gauss-Newton products in one call), optionally
   scaled down so that ``delta^T G delta <= norm_constraint``;
5. ``rho`` from the loss at the new point against the undamped model;
   ``rho > 3/4``: ``lambda *= omega``, ``rho < 1/4``: ``lambda /= omega``
   (Levenberg-Marquardt, section 6.5, ``omega = 19/20`` per step).

With a fixed ``learning_rate`` (the "non-adaptive" mode of kfac-jax and of Ba,
Grosse & Martens 2017) steps 4-5 become ``delta = lr Delta + mu delta_prev`` with
a fixed momentum and damping, and no curvature products: a step then costs about
two first-order steps (the gradient and the statistics pass) plus the loss at the
new point. The norm constraint uses K-FAC's own curvature there,
``lr^2 Delta^T F Delta = -lr^2 g^T Delta``.

A non-finite loss, gradient, statistic, eigendecomposition, curvature product or
new loss rejects the step (the weights and the averaged factors stay) and raises
the damping.

State (damping, averaged factors, eigendecompositions, previous update, step
count) lives in optimizer variables. The factor variables depend on the model's
layers, so they are made at the first step; `load_own_variables` keeps saved
ones until then, so a loaded model resumes exactly.
"""

import math
from typing import Any, NamedTuple, Optional

import keras
import numpy as np
import tensorflow as tf

from ctc_newton.optimizers._kronecker_state import KroneckerState
from ctc_newton.optimizers._flat import FlatProblem
from ctc_newton.optimizers.base import SecondOrderOptimizer
from ctc_newton.optimizers.step_result import StepResult
from ctc_newton.optimizers.damping import reduction_ratio


class _Products(NamedTuple):
    """Gauss-Newton products of several vectors at one linearization (an
    `Oracle.solve` result: ``iterations`` counts the products)."""

    products: tf.Tensor
    iterations: tf.Tensor


def _products(oracle, vectors):
    product = FlatProblem(oracle).product("gauss_newton")
    return _Products(tf.stack([product(v) for v in vectors]), tf.constant(len(vectors)))


@keras.saving.register_keras_serializable(package="ctc_newton")
class KFAC(SecondOrderOptimizer):
    """K-FAC with the CTC Gauss-Newton (see the module docstring for the recipe).

    Args:
      damping: initial ``lambda`` (> 0; 0.01 reached 6.6% test label error on digit
        lines in 6 epochs where 1.0 reached 10.6%: `benchmarks/results/kfac_*`).
      min_damping: floor for ``lambda``.
      statistics_decay: running-average decay of the factors (0.95).
      inverse_update_period: steps between eigendecompositions (>= 1).
      learning_rate: None (adaptive): the step size, and the momentum, from the
        exact quadratic model, with the damping adapted; a number: fixed steps
        ``learning_rate * Delta`` (+ momentum) at a fixed damping, no curvature
        products.
      momentum: None: solved with the step size (adaptive; 0 with a fixed
        learning rate); a number in [0, 1): a fixed coefficient, which needs a
        fixed ``learning_rate`` (0 turns momentum off in either mode).
      norm_constraint: if set, scale the update so that ``delta^T G delta`` is at
        most this (the KL clip; K-FAC's curvature with a fixed learning rate);
        None: no clip.
      exact_statistics: ``S`` from every output class (one backward pass per class)
        instead of one sampled class per frame.
      seed: seed of the sampled classes (None: drawn once).
      name: optimizer name.
    """

    needs_gauss_newton = True
    needs_keras_model = True

    def __init__(
        self,
        damping: float = 0.01,
        min_damping: float = 1e-6,
        statistics_decay: float = 0.95,
        inverse_update_period: int = 5,
        learning_rate: Optional[float] = None,
        momentum: Optional[float] = None,
        norm_constraint: Optional[float] = None,
        exact_statistics: bool = False,
        seed: Optional[int] = None,
        name: str = "kfac",
    ):
        super().__init__(name=name)
        self._check_positive("damping", damping)
        self._check_positive("min_damping", min_damping, allow_zero=True)
        if not 0 <= statistics_decay < 1:
            raise ValueError(f"`statistics_decay` must be in [0, 1), got {statistics_decay}.")
        if int(inverse_update_period) != inverse_update_period or inverse_update_period < 1:
            raise ValueError(
                f"`inverse_update_period` must be an integer >= 1, got {inverse_update_period}."
            )
        if norm_constraint is not None:
            self._check_positive("norm_constraint", norm_constraint)
        if learning_rate is not None:
            self._check_positive("learning_rate", learning_rate)
        if momentum is not None and not 0 <= momentum < 1:
            raise ValueError(f"`momentum` must be None or in [0, 1), got {momentum}.")
        if learning_rate is None and momentum not in (None, 0):
            raise ValueError(
                f"`momentum={momentum}` is a fixed coefficient, which needs a fixed "
                "`learning_rate`; leave it None to solve for it (adaptive mode), or 0."
            )
        self.fixed_learning_rate = learning_rate
        self.initial_damping = damping
        self.min_damping = min_damping
        self.statistics_decay = statistics_decay
        self.inverse_update_period = int(inverse_update_period)
        self.momentum = momentum
        self.norm_constraint = norm_constraint
        self.exact_statistics = exact_statistics
        self.seed = int(np.random.randint(2**31 - 1)) if seed is None else int(seed)
        self.damping = self._scalar_state("damping", damping)
        self.previous_update: Any = None  # made by build (problem size)
        self._kronecker = KroneckerState(
            self, statistics_decay, self.inverse_update_period, exact_statistics, self.seed
        )

    def build(self, variables):
        super().build(variables)
        size = int(sum(np.prod(v.shape) for v in variables))
        self.previous_update = self.add_variable((size,), dtype="float64", name="previous_update")

    def _config(self):
        return dict(
            damping=self.initial_damping,
            min_damping=self.min_damping,
            statistics_decay=self.statistics_decay,
            inverse_update_period=self.inverse_update_period,
            learning_rate=self.fixed_learning_rate,
            momentum=self.momentum,
            norm_constraint=self.norm_constraint,
            exact_statistics=self.exact_statistics,
            seed=self.seed,
        )

    # ----------------------------------------------------------- the step
    def _reject(self, value, note, **record):
        self.damping.assign(self._read(self.damping) / self._omega)
        return StepResult.rejected(value, note + "; damping raised", **record)

    _omega = 19 / 20

    def _step(self, oracle, curvature_oracle=None):
        problem, value, gradient, finite = self._start(oracle)
        damping = self._read(self.damping)
        if not finite:
            return self._reject(value, "non-finite loss or gradient", damping=damping)
        if not bool(tf.reduce_any(gradient != 0)):
            return StepResult.stationary(value)
        failure = self._kronecker.update(oracle, int(self.iterations.numpy()))
        if failure is not None:
            return self._reject(value, failure, damping=damping)
        self.iterations.assign_add(1)
        direction = -self._kronecker.inverse(gradient, damping)
        previous = tf.cast(tf.convert_to_tensor(self.previous_update), problem.dtype)
        if self.fixed_learning_rate is not None:
            return self._fixed_step(problem, value, gradient, direction, previous, damping)
        # With momentum, two products from the first step on (the second is of zeros
        # then): one graph traced, not two.
        vectors = [direction, previous] if self.momentum is None else [direction]
        products = (curvature_oracle or oracle).solve(
            ("kfac_products", len(vectors)), _products, vectors
        )
        update, curvature = self._combine(gradient, direction, previous, products.products, damping)
        if update is None:
            return self._reject(value, "non-finite curvature product", damping=damping)
        new_value = self._try(problem, update)
        if new_value is None:
            return self._reject(value, "non-finite loss after the update", damping=damping)
        predicted = float(tf.reduce_sum(gradient * update)) + 0.5 * curvature
        rho = reduction_ratio(new_value - value, predicted)
        if rho > 0.75:
            damping_next = damping * self._omega
        elif rho < 0.25 or math.isnan(rho):
            damping_next = damping / self._omega
        else:
            damping_next = damping
        self.damping.assign(max(damping_next, self.min_damping))
        self.previous_update.assign(tf.cast(update, self.previous_update.dtype))
        return StepResult(
            value=value,
            accepted=True,
            rho=rho,
            damping=damping,
            step_size=float(tf.norm(update)),
            value_after=new_value,
            cg_iterations=int(products.iterations),
        )

    def _try(self, problem, update):
        """Moves the variables by ``update``; the new loss, or None (and no move) if
        it or the update is not finite."""
        if not bool(tf.reduce_all(tf.math.is_finite(update))):
            return None
        x = problem.position()
        new_value = problem.value_at(x + update)
        if not math.isfinite(new_value):
            problem.assign(x)
            return None
        return new_value

    def _fixed_step(self, problem, value, gradient, direction, previous, damping):
        rate = self.fixed_learning_rate
        assert rate is not None
        if self.norm_constraint is not None:
            squared = rate**2 * abs(float(tf.reduce_sum(gradient * direction)))
            if squared > self.norm_constraint:
                rate *= math.sqrt(self.norm_constraint / squared)
        update = rate * direction + (self.momentum or 0.0) * previous
        new_value = self._try(problem, update)
        if new_value is None:
            return self._reject(value, "non-finite loss or update", damping=damping)
        self.previous_update.assign(tf.cast(update, self.previous_update.dtype))
        return StepResult(
            value=value,
            accepted=True,
            damping=damping,
            step_size=float(tf.norm(update)),
            value_after=new_value,
        )

    def _combine(self, gradient, direction, previous, products, damping):
        """``(alpha Delta + mu delta_prev, its undamped curvature)`` minimizing the
        damped quadratic model (``mu = 0`` with one product); ``(None, None)`` when a
        product is non-finite."""
        if not bool(tf.reduce_all(tf.math.is_finite(products))):
            return None, None

        def dot(a, b):
            return float(tf.reduce_sum(a * b))

        g_direction = products[0]
        m11 = dot(direction, g_direction)
        b1 = dot(gradient, direction)
        if len(products) == 2 and bool(tf.reduce_any(previous != 0)):
            g_previous = products[1]
            m12 = dot(direction, g_previous)
            m22 = dot(previous, g_previous)
            curvature = np.array([[m11, m12], [m12, m22]])
            damped = curvature + damping * np.array(
                [
                    [dot(direction, direction), dot(direction, previous)],
                    [dot(direction, previous), dot(previous, previous)],
                ]
            )
            b = np.array([b1, dot(gradient, previous)])
            try:
                alpha, mu = -np.linalg.solve(damped, b)
            except np.linalg.LinAlgError:
                alpha, mu = -b1 / damped[0, 0], 0.0
            if not (math.isfinite(alpha) and math.isfinite(mu)):
                alpha, mu = -b1 / damped[0, 0], 0.0
        else:
            curvature = np.array([[m11, 0.0], [0.0, 0.0]])
            alpha, mu = -b1 / (m11 + damping * dot(direction, direction)), 0.0
        coefficients = np.array([alpha, mu])
        quadratic = float(coefficients @ curvature @ coefficients)
        if self.norm_constraint is not None and quadratic > self.norm_constraint:
            shrink = math.sqrt(self.norm_constraint / quadratic)
            alpha, mu, quadratic = alpha * shrink, mu * shrink, self.norm_constraint
        if not (math.isfinite(alpha) and math.isfinite(mu) and math.isfinite(quadratic)):
            return None, None
        return alpha * direction + mu * previous, quadratic
