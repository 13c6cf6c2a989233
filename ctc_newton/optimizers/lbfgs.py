"""L-BFGS over lists of variables: a wrapper of ``tfp.optimizer.lbfgs_minimize``."""

from typing import Optional

import numpy as np
import keras
import tensorflow as tf
import tensorflow_probability as tfp

from ctc_newton.optimizers._flat import FlatProblem
from ctc_newton.optimizers.base import SecondOrderOptimizer


@keras.saving.register_keras_serializable(package="ctc_newton")
class LBFGS(SecondOrderOptimizer):
    """L-BFGS on the oracle's variables (flattened inside), resumable.

    Each `step` (or `run`) runs up to ``max_iterations`` iterations of
    ``tfp.optimizer.lbfgs_minimize`` from the variables' values, continuing the
    previous run's curvature memory when the point is where that run stopped.
    The memory (position and gradient deltas) is mirrored in variables, so a
    checkpoint restores it.

    Args:
      num_correction_pairs: memory size ``m``.
      tolerance: stop when the sup-norm of the gradient is below this.
      x_tolerance: stop when the position changes less than this.
      f_relative_tolerance: stop when the relative loss change is below this.
      max_iterations: iterations per `step`.
      max_line_search_iterations: Hager-Zhang line-search cap.
      name: module name.
    """

    def __init__(self, num_correction_pairs: int = 10, tolerance: float = 1e-8,
                 x_tolerance: float = 0.0, f_relative_tolerance: float = 0.0,
                 max_iterations: int = 50, max_line_search_iterations: int = 50,
                 name: str = "lbfgs"):
        super().__init__(name=name)
        if num_correction_pairs < 1 or max_iterations < 1 or max_line_search_iterations < 1:
            raise ValueError("`num_correction_pairs`, `max_iterations` and "
                             "`max_line_search_iterations` must be >= 1.")
        self._check_positive("tolerance", tolerance, allow_zero=True)
        self.num_correction_pairs = num_correction_pairs
        self.tolerance = tolerance
        self.x_tolerance = x_tolerance
        self.f_relative_tolerance = f_relative_tolerance
        self.max_iterations = max_iterations
        self.max_line_search_iterations = max_line_search_iterations
        self.results: Optional[object] = None
        self.position_deltas = None
        self.gradient_deltas = None

    def build(self, variables):
        super().build(variables)
        size = int(sum(np.prod(v.shape) for v in variables))
        shape = (self.num_correction_pairs, size)
        self.position_deltas = self.add_variable(shape, dtype="float64", name="position_deltas")
        self.gradient_deltas = self.add_variable(shape, dtype="float64", name="gradient_deltas")

    def _config(self):
        return dict(num_correction_pairs=self.num_correction_pairs, tolerance=self.tolerance,
                    x_tolerance=self.x_tolerance,
                    f_relative_tolerance=self.f_relative_tolerance,
                    max_iterations=self.max_iterations,
                    max_line_search_iterations=self.max_line_search_iterations)

    def run(self, oracle, max_iterations: Optional[int] = None):
        """Runs L-BFGS from the current variables; leaves them at its result.

        Returns:
          tfp's ``LBfgsOptimizerResults``.
        """
        self._ensure_built(oracle.variables)
        problem = FlatProblem(oracle)
        counts = {"evaluations": 0}

        def value_and_gradients(x):
            problem.assign(x)
            oracle.linearize()
            counts["evaluations"] += 1
            return tf.cast(oracle.value(), problem.dtype), problem.gradient()

        start = problem.position()
        previous = self.results
        if previous is not None and not bool(tf.reduce_all(tf.equal(previous.position, start))):
            previous = None  # the variables moved since: start a fresh memory
        if previous is not None:
            # Same point, maybe a new batch: refresh the value and gradient there, keep
            # the curvature memory.
            oracle.linearize()
            previous = previous._replace(
                converged=tf.constant(False), failed=tf.constant(False),
                objective_value=tf.cast(oracle.value(), problem.dtype),
                objective_gradient=problem.gradient())
        results = tfp.optimizer.lbfgs_minimize(
            value_and_gradients, initial_position=None if previous is not None else start,
            previous_optimizer_results=previous,
            num_correction_pairs=self.num_correction_pairs, tolerance=self.tolerance,
            x_tolerance=self.x_tolerance, f_relative_tolerance=self.f_relative_tolerance,
            max_iterations=(max_iterations or self.max_iterations)
            + (int(previous.num_iterations) if previous is not None else 0),
            max_line_search_iterations=self.max_line_search_iterations)
        problem.assign(results.position)
        oracle.linearize()
        self.results = results
        self._mirror(results)
        self.last_run_iterations = int(results.num_iterations) - (
            int(previous.num_iterations) if previous is not None else 0)
        self.iterations.assign_add(self.last_run_iterations)
        return results

    def _mirror(self, results):
        self.position_deltas.assign(tf.cast(results.position_deltas, tf.float64))
        self.gradient_deltas.assign(tf.cast(results.gradient_deltas, tf.float64))

    def step(self, oracle, curvature_oracle=None):
        value = float(oracle.value())
        results = self.run(oracle)
        return {"value": value, "value_after": float(results.objective_value),
                "accepted": not bool(results.failed),
                "lbfgs_iterations": self.last_run_iterations,
                "converged": bool(results.converged), "failed": bool(results.failed)}
