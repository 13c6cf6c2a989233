"""L-BFGS over lists of variables, resumable, compiled for full-batch runs."""

import warnings
from typing import Any, Callable, Optional

import numpy as np
import keras
import tensorflow as tf

from ctc_newton.curvature import flatten
from ctc_newton.optimizers import _lbfgs_loop
from ctc_newton.optimizers._lbfgs_loop import Results
from ctc_newton.optimizers._flat import FlatProblem
from ctc_newton.optimizers.base import SecondOrderOptimizer, restore_on_exception
from ctc_newton.optimizers.step_result import StepResult


def _finite(*tensors) -> bool:
    return all(bool(tf.reduce_all(tf.math.is_finite(t))) for t in tensors)


@keras.saving.register_keras_serializable(package="ctc_newton")
class LBFGS(SecondOrderOptimizer):
    """L-BFGS on the oracle's variables (flattened inside), resumable.

    Each `step` (or `run`) runs up to ``max_iterations`` iterations from the
    variables' values, continuing the previous run's curvature memory when the
    point is where that run stopped. The iteration is tfp's
    (``tfp.optimizer.lbfgs_minimize``'s state and stopping rules) with a strong
    Wolfe line search that tries the quasi-Newton step first, so most iterations
    cost one evaluation (see `ctc_newton.optimizers._lbfgs_loop`).
    The memory (the point it belongs to, position and gradient deltas) lives in
    optimizer variables, so a checkpoint or ``load_model`` resumes it exactly.

    Failure semantics: a run does not start from a non-finite loss or gradient;
    a run that ends failed (line search) or non-finite keeps its result only if
    it is finite and no worse than the start, else the variables go back to the
    start; either way the memory is dropped (the next run starts fresh) and the
    result has ``failed=True``. Non-finite values are never assigned.

    Args:
      num_correction_pairs: memory size ``m``.
      tolerance: stop when the sup-norm of the gradient is below this.
      x_tolerance: stop when the position changes less than this.
      f_relative_tolerance: stop when the relative loss change is below this.
      max_iterations: iterations per `step`.
      max_line_search_iterations: evaluations allowed in one line search.
      name: module name.
    """

    def __init__(
        self,
        num_correction_pairs: int = 10,
        tolerance: float = 1e-8,
        x_tolerance: float = 0.0,
        f_relative_tolerance: float = 0.0,
        max_iterations: int = 50,
        max_line_search_iterations: int = 50,
        name: str = "lbfgs",
    ):
        super().__init__(name=name)
        if num_correction_pairs < 1 or max_iterations < 1 or max_line_search_iterations < 1:
            raise ValueError(
                "`num_correction_pairs`, `max_iterations` and "
                "`max_line_search_iterations` must be >= 1."
            )
        self._check_positive("tolerance", tolerance, allow_zero=True)
        self._check_positive("x_tolerance", x_tolerance, allow_zero=True)
        self._check_positive("f_relative_tolerance", f_relative_tolerance, allow_zero=True)
        self.num_correction_pairs = num_correction_pairs
        self.tolerance = tolerance
        self.x_tolerance = x_tolerance
        self.f_relative_tolerance = f_relative_tolerance
        self.max_iterations = max_iterations
        self.max_line_search_iterations = max_line_search_iterations
        self.results: Optional[Results] = None
        self.last_run_iterations = 0
        self.last_run_trace: Optional[_lbfgs_loop.IterationTrace] = None
        # The memory's optimizer variables (keras.Variable), made by build.
        self.position_deltas: Any = None
        self.gradient_deltas: Any = None
        self.memory_position: Any = None
        self.has_memory: Any = None
        self.memory_iterations: Any = None
        # The compiled loop and what it was traced for.
        self._loop_key: Optional[tuple] = None
        self._loop: Optional[Callable] = None
        self._eager_only = None  # an oracle whose loss could not be traced

    def build(self, variables):
        super().build(variables)
        size = int(sum(np.prod(v.shape) for v in variables))
        shape = (self.num_correction_pairs, size)
        self.position_deltas = self.add_variable(shape, dtype="float64", name="position_deltas")
        self.gradient_deltas = self.add_variable(shape, dtype="float64", name="gradient_deltas")
        self.memory_position = self.add_variable((size,), dtype="float64", name="memory_position")
        self.has_memory = self._scalar_state("has_memory", 0.0)
        # tfp reads how many correction pairs are filled from the iteration count.
        self.memory_iterations = self._scalar_state("memory_iterations", 0.0)

    def _config(self):
        return dict(
            num_correction_pairs=self.num_correction_pairs,
            tolerance=self.tolerance,
            x_tolerance=self.x_tolerance,
            f_relative_tolerance=self.f_relative_tolerance,
            max_iterations=self.max_iterations,
            max_line_search_iterations=self.max_line_search_iterations,
        )

    # ------------------------------------------------------------------ memory
    def _memory(self, dtype) -> Optional[Results]:
        """The curvature memory: in Python after a run, else from the variables
        (after a restore from a checkpoint or ``load_model``)."""
        if self.results is not None:
            return self.results
        if self._read(self.has_memory) != 1.0:
            return None

        def cast(v):
            return tf.cast(tf.convert_to_tensor(v), dtype)

        return Results(
            converged=tf.constant(False),
            failed=tf.constant(False),
            num_iterations=tf.constant(int(self._read(self.memory_iterations))),
            num_objective_evaluations=tf.constant(0),
            position=cast(self.memory_position),
            objective_value=None,
            objective_gradient=None,
            position_deltas=cast(self.position_deltas),
            gradient_deltas=cast(self.gradient_deltas),
        )

    def _keep_memory(self, results: Results) -> None:
        self.results = results
        self.memory_position.assign(tf.cast(results.position, tf.float64))
        self.position_deltas.assign(tf.cast(results.position_deltas, tf.float64))
        self.gradient_deltas.assign(tf.cast(results.gradient_deltas, tf.float64))
        self.memory_iterations.assign(float(results.num_iterations))
        self.has_memory.assign(1.0)

    def reset(self) -> None:
        """Drops the curvature memory: the next run starts from a fresh one."""
        self.results = None
        if self.built:
            self.has_memory.assign(0.0)

    # ------------------------------------------------------------------ runs
    def run(
        self,
        oracle,
        max_iterations: Optional[int] = None,
        refresh: bool = True,
        compiled: bool = False,
        keep_iterates: bool = False,
    ) -> Results:
        """Runs L-BFGS from the current variables; leaves them at its (finite) result.

        Args:
          oracle: a `CurvatureOracle` (linearized at the variables when ``refresh``).
          max_iterations: iterations of this run (default ``self.max_iterations``).
          refresh: read the loss and gradient at the start from the oracle (a new
            batch) and leave the oracle linearized at the result. False for a
            full-batch run resumed in chunks: the start comes from the memory when
            it is at the variables, and the oracle is left wherever the run last
            evaluated (the caller linearizes when it needs it).
          compiled: run the loop inside one ``tf.function`` on the oracle's
            `current_value_and_gradient` (a `CurvatureOracle` only; traced once per
            oracle, so for full-batch runs, not a new oracle per batch).
          keep_iterates: keep each iteration's position and gradient in
            ``last_run_trace`` (its loss and gradient norm are always kept).

        Returns:
          tfp's ``LBfgsOptimizerResults`` (with ``failed=True`` when the run was
          rejected, see the class docstring). ``last_run_iterations`` and
          ``last_run_trace`` (an `IterationTrace`) say what each iteration reached.
        """
        self._ensure_built(oracle.variables)
        problem = FlatProblem(oracle)
        with restore_on_exception(oracle.variables):
            return self._run(
                oracle,
                problem,
                max_iterations or self.max_iterations,
                refresh,
                compiled,
                keep_iterates,
            )

    def _options(self):
        return dict(
            tolerance=self.tolerance,
            x_tolerance=self.x_tolerance,
            f_relative_tolerance=self.f_relative_tolerance,
            max_line_search_iterations=self.max_line_search_iterations,
        )

    def _compiled_loop(self, oracle, problem):
        """The loop in a ``tf.function`` over ``oracle``'s loss: ``(previous,
        max_iterations) -> results``, traced once per oracle and settings."""
        key = (id(oracle), tuple(sorted(self._options().items())))
        if self._loop_key == key:
            return self._loop
        options, dtype = self._options(), problem.dtype

        @tf.function(autograph=False)  # traced once, called at each evaluation site
        def value_and_gradients(x):
            problem.assign(x)
            value, gradient = oracle.current_value_and_gradient()
            return tf.cast(value, dtype), tf.cast(flatten(gradient), dtype)

        @tf.function(autograph=False)
        def resume(previous, max_iterations, keep_iterates):
            return _lbfgs_loop.minimize_from(
                value_and_gradients,
                previous,
                max_iterations,
                keep_iterates=keep_iterates,
                **options,
            )

        def loop(previous, max_iterations, keep_iterates):
            results, trace = resume(previous, tf.constant(max_iterations, tf.int32), keep_iterates)
            evaluations = int(results.num_objective_evaluations) - int(
                previous.num_objective_evaluations
            )
            oracle.num_function_evaluations += evaluations
            oracle.num_gradient_evaluations += evaluations
            return results, trace

        self._loop_key, self._loop = key, loop
        return loop

    def _compiled_run(self, oracle, problem, previous, max_iterations, keep_iterates):
        """Results and trace of the compiled loop, or None when the loss cannot be
        traced (then this oracle runs eagerly from now on, with a warning saying why)."""
        if self._eager_only is oracle:
            return None
        try:  # tracing (the first call for this oracle) is what can fail
            return self._compiled_loop(oracle, problem)(previous, max_iterations, keep_iterates)
        except (
            TypeError,
            ValueError,
            NotImplementedError,
            AttributeError,
            tf.errors.OperatorNotAllowedInGraphError,
        ) as error:
            warnings.warn(
                f"{self.name}: the loss could not be traced into a tf.function "
                f"({type(error).__name__}: {error}); running L-BFGS eagerly "
                "(slower). Write the loss with TensorFlow ops to compile it.",
                stacklevel=4,
            )
            self._eager_only, self._loop_key = oracle, None
            return None

    def _run(self, oracle, problem, max_iterations, refresh, compiled, keep_iterates):
        linearized_at = [None]  # the point the oracle was last linearized at

        def value_and_gradients(x):
            problem.assign(x)
            oracle.linearize()
            linearized_at[0] = x
            return tf.cast(oracle.value(), problem.dtype), problem.gradient()

        def move_to(x):
            problem.assign(x)
            if refresh and (
                linearized_at[0] is None or not bool(tf.reduce_all(tf.equal(linearized_at[0], x)))
            ):
                oracle.linearize()

        start = problem.position()
        previous = self._memory(problem.dtype)
        if previous is not None and not bool(tf.reduce_all(tf.equal(previous.position, start))):
            previous = None  # the variables moved since: start a fresh memory
        if not refresh and previous is not None and previous.objective_value is not None:
            start_value, start_gradient = previous.objective_value, previous.objective_gradient
        else:
            if not refresh:
                oracle.linearize()
            start_value = tf.cast(oracle.value(), problem.dtype)
            start_gradient = problem.gradient()
            if previous is not None:
                previous = previous._replace(
                    converged=tf.constant(False),
                    failed=tf.constant(False),
                    objective_value=start_value,
                    objective_gradient=start_gradient,
                )
        self.last_run_iterations, self.last_run_trace = 0, None

        def stay(converged):
            return Results(
                tf.constant(converged),
                tf.constant(not converged),
                tf.constant(0),
                tf.constant(0),
                start,
                start_value,
                start_gradient,
                tf.zeros([0]),
                tf.zeros([0]),
            )

        if not _finite(start_value, start_gradient):
            return stay(converged=False)  # the memory is kept for the next batch
        if not bool(tf.reduce_any(start_gradient != 0)):
            # The zero step is the answer (with gtol=0 the loop would search along a
            # zero direction and fail).
            return stay(converged=True)
        if previous is None:  # a fresh memory, from the evaluation at hand
            previous = _lbfgs_loop.initial_state(
                start, start_value, start_gradient, self.num_correction_pairs, self.tolerance
            )
        done = int(previous.num_iterations)
        run = None
        if compiled:
            run = self._compiled_run(
                oracle, problem, previous, max_iterations + done, keep_iterates
            )
        if run is None:
            run = _lbfgs_loop.minimize_from(
                value_and_gradients,
                previous,
                max_iterations + done,
                keep_iterates=keep_iterates,
                **self._options(),
            )
        results, self.last_run_trace = run
        self.last_run_iterations = int(results.num_iterations) - done
        self.iterations.assign_add(self.last_run_iterations)
        usable = _finite(results.position, results.objective_value, results.objective_gradient)
        if (
            usable
            and not bool(results.failed)
            and _finite(results.position_deltas, results.gradient_deltas)
        ):
            move_to(results.position)
            self._keep_memory(results)
            return results
        self.reset()
        if usable and float(results.objective_value) <= float(start_value):
            move_to(results.position)  # a failed line search after progress
        else:
            results = results._replace(
                position=start, objective_value=start_value, objective_gradient=start_gradient
            )
            linearized_at[0] = None
            move_to(start)
        return results._replace(failed=tf.constant(True), converged=tf.constant(False))

    def _step(self, oracle, curvature_oracle=None):
        value = float(oracle.value())
        before = FlatProblem(oracle).position()
        results = self.run(oracle)  # its position is where it left the variables
        return StepResult(
            value=value,
            value_after=float(results.objective_value),
            accepted=not bool(tf.reduce_all(tf.equal(before, results.position))),
            lbfgs_iterations=self.last_run_iterations,
            converged=bool(results.converged),
            failed=bool(results.failed),
            linearized=True,
        )
