"""`minimize`: one front door for full-batch problems, like ``scipy.optimize.minimize``."""

import math
import numbers
import sys
import warnings
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf

from ctc_newton.curvature import CurvatureOracle, flatten
from ctc_newton.curvature.base import Oracle
from ctc_newton.optimizers import registry
from ctc_newton.optimizers._bounded import minimize_bounded
from ctc_newton.optimizers._flat import check_variables
from ctc_newton.optimizers.lbfgs import LBFGS
from ctc_newton.optimizers.newton_cg import LineSearchNewtonCG
from ctc_newton.optimizers.result import OptimizeResult

METHODS = registry.METHODS
# Default cap on Newton-type iterations: scipy's 200 n is 880,000 for a 4,417-weight MLP,
# and the reference problems converge in tens to hundreds.
MAX_NEWTON_ITERATIONS = 1000
# L-BFGS iterations per compiled run: amortizes the per-call cost (~10-20 ms on 2 CPU
# cores) while an interrupt loses little; callbacks see every iteration from its trace.
LBFGS_CHUNK = 20


def _split(flat: np.ndarray, variables) -> List[np.ndarray]:
    """A flat numpy vector as arrays shaped like ``variables`` (numpy's `unflatten`)."""
    shapes = [tuple(v.shape) for v in variables]
    ends = np.cumsum([int(np.prod(shape)) for shape in shapes])[:-1]
    return [part.reshape(shape) for part, shape in zip(np.split(flat, ends), shapes)]


def _norm(vector) -> float:
    """The Euclidean norm without overflow in the squares (huge but finite gradients)."""
    scale = float(tf.reduce_max(tf.abs(vector)))
    if scale == 0 or not math.isfinite(scale):
        return scale
    return scale * float(tf.norm(vector / scale))


def _build_oracle(fun_or_oracle, variables_or_x0):
    """Returns ``(oracle, flat_variable_or_None)``."""
    if isinstance(fun_or_oracle, Oracle):
        return fun_or_oracle, None
    if not callable(fun_or_oracle):
        raise TypeError(
            "`fun_or_oracle` must be a CurvatureOracle (or another "
            "ctc_newton.curvature oracle) or a callable."
        )
    if variables_or_x0 is None:
        raise ValueError(
            "A function needs `variables_or_x0`: a list of tf.Variables, or an "
            "initial flat vector x0."
        )
    if isinstance(variables_or_x0, (list, tuple)) and not len(variables_or_x0):
        raise ValueError(
            "`variables_or_x0` is empty: pass the tf.Variables the function "
            "reads, or an initial point x0."
        )
    if (
        isinstance(variables_or_x0, (list, tuple))
        and variables_or_x0
        and all(isinstance(v, tf.Variable) or hasattr(v, "assign") for v in variables_or_x0)
    ):
        variables = list(variables_or_x0)
        return CurvatureOracle.from_function(fun_or_oracle, variables), None
    x0 = np.asarray(variables_or_x0)
    dtype = (
        tf.float64
        if x0.dtype == np.float64 or not np.issubdtype(x0.dtype, np.floating)
        else tf.as_dtype(x0.dtype)
    )
    flat = tf.Variable(tf.constant(x0.reshape(-1), dtype), name="x")
    shape = x0.shape
    return CurvatureOracle.from_function(
        lambda: fun_or_oracle(tf.reshape(flat, shape)), [flat]
    ), flat


# What a trace of a loss that is not written in TensorFlow ops raises.
_UNTRACEABLE = (
    TypeError,
    ValueError,
    NotImplementedError,
    AttributeError,
    tf.errors.OperatorNotAllowedInGraphError,
)


def _compile(oracle):
    """The `GraphOracle` of a tape oracle, or the oracle itself (with a warning)
    when its loss cannot be traced."""
    if not isinstance(oracle, CurvatureOracle):
        return oracle.linearize()
    try:
        graph = oracle.compiled()
        graph.value()  # the first call traces
        return graph
    except _UNTRACEABLE as error:
        warnings.warn(
            f"minimize: the loss could not be traced into a tf.function "
            f"({type(error).__name__}: {error}); running eagerly (slower). Write "
            "the loss with TensorFlow ops to compile it.",
            stacklevel=3,
        )
        return oracle.linearize()


def minimize(
    fun_or_oracle,
    variables_or_x0=None,
    method: str = "trust-ncg",
    *,
    gtol: float = 1e-5,
    xtol: float = 1e-5,
    maxiter: Optional[int] = None,
    callback: Optional[Callable] = None,
    display: bool = False,
    compiled: bool = True,
    bounds=None,
    **options,
) -> OptimizeResult:
    """Minimizes a full-batch loss with a second-order method.

    Args:
      fun_or_oracle: an oracle (required for ``"gauss-newton"``, ``"hessian-free"``
        and ``"levenberg-marquardt"``, which need a model/loss split: build it with
        ``CurvatureOracle.from_keras``, ``from_outputs`` or, for least squares,
        ``from_residuals``), or a function: of no
        arguments reading ``variables``, or of one tensor shaped like ``x0``.
      variables_or_x0: the list of ``tf.Variable``s the function reads, or a flat
        (or any-shape) initial point; None with an oracle.
      method: one of ``"newton-cg"``, ``"trust-ncg"``, ``"gauss-newton"``,
        ``"hessian-free"``, ``"lbfgs"``, ``"levenberg-marquardt"``. ``"lbfgs"`` traces
        the loss into one ``tf.function`` with the L-BFGS loop (a loss that cannot be
        traced runs eagerly, with a warning).
      gtol: stop when the gradient's Euclidean norm is below this (L-BFGS: its
        sup-norm, tfp's ``tolerance``).
      xtol: (``"newton-cg"``) stop when ``sum |update| <= xtol * n``, as scipy does.
      maxiter: iteration limit (None: ``200 n`` for the Newton methods, scipy's,
        capped at `MAX_NEWTON_ITERATIONS` so that a default run on a model ends in
        minutes; 500 for L-BFGS). 0 returns the start point.
      callback: called after each iteration with an `OptimizeResult` of the
        current state; returning True stops.
      display: print one line per iteration.
      compiled: run the loss, gradient and each step's CG solve as graph functions
        traced once (a `CurvatureOracle` is wrapped by its ``compiled()``
        `GraphOracle`; L-BFGS runs its whole loop in one). False runs eagerly, for
        debugging. A loss that cannot be traced runs eagerly, with a warning.
      bounds: (``"lbfgs"`` only) a ``scipy.optimize.Bounds``, one ``(low, high)``
        pair for every element, or one pair per element of the flat variables (None:
        unbounded on that side). The run is scipy's L-BFGS-B on the compiled loss
        and gradient; the start is clipped into the bounds.
      **options: passed to the optimizer class (e.g. ``damping=``, ``rule=``,
        ``max_cg_iterations=``, ``initial_radius=``).

    Returns:
      An `OptimizeResult`. The variables are left at ``x``, the last accepted
      point, which is always finite. ``success`` is True only when a convergence
      criterion was met at a finite loss and gradient.

    Raises:
      ValueError: unknown method, bad tolerances or ``maxiter``, no variables,
        variables of mixed dtypes, a method that needs a Gauss-Newton product
        given a plain function, or ``bounds`` that do not fit (or with a method
        other than ``"lbfgs"``).
    """
    optimizer = registry.get(method, **options)
    if optimizer.needs_keras_model:
        raise ValueError(
            f"method={method!r} is a mini-batch method for Keras models, not a "
            f"full-batch one: compile the model with it (model.compile(optimizer="
            f"{type(optimizer).__name__}(), loss=...)) and call model.fit."
        )
    if not (gtol >= 0 and xtol >= 0):
        raise ValueError(f"`gtol` and `xtol` must be >= 0, got gtol={gtol}, xtol={xtol}.")
    if maxiter is not None and (
        isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral) or maxiter < 0
    ):
        raise ValueError(
            f"`maxiter` must be a non-negative integer (or None for the default), got {maxiter!r}."
        )
    oracle, flat_variable = _build_oracle(fun_or_oracle, variables_or_x0)
    check_variables(oracle.variables, "variables_or_x0")
    if optimizer.needs_gauss_newton and not oracle.supports_gauss_newton:
        raise ValueError(
            f"method={method!r} needs Gauss-Newton products: pass a "
            "CurvatureOracle built with from_keras or from_outputs."
        )
    n = oracle.size
    history: List[Dict[str, Any]] = []

    def result(message, success, status, nit, at=None):
        """The `OptimizeResult` at the variables, or at ``at = (x, value, gradient)``
        when given (else read from the oracle, which must be linearized there)."""
        if at is None:
            x = [tf.convert_to_tensor(v).numpy() for v in oracle.variables]
            value, gradient = oracle.value(), oracle.gradient()
        else:
            x, value, gradient = at
        jac: Any = [np.asarray(g) for g in gradient]
        fun = float(value)
        if success and not (math.isfinite(fun) and all(np.all(np.isfinite(g)) for g in jac)):
            message, success, status = (
                f"{message}, but the loss or gradient is not finite there",
                False,
                2,
            )
        if flat_variable is not None:
            shape = np.shape(variables_or_x0)
            x, jac = x[0].reshape(shape), jac[0].reshape(shape)
        return OptimizeResult(
            x=x,
            fun=fun,
            jac=jac,
            nit=nit,
            nfev=oracle.num_function_evaluations,
            njev=oracle.num_gradient_evaluations,
            nhev=oracle.num_curvature_products,
            success=success,
            status=status,
            message=message,
            history=history,
        )

    def report(record):
        history.append(record)
        if display:
            fields = ", ".join(
                f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                for key, value in record.items()
                if key != "note"
            )
            print(f"[{method}] {fields}", file=sys.stdout, flush=True)

    if bounds is not None:
        if not isinstance(optimizer, LBFGS):
            raise ValueError(
                f"`bounds` works with method='lbfgs' (scipy's L-BFGS-B on the "
                f"compiled loss), not method={method!r}."
            )
        oracle = _compile(oracle) if compiled else oracle.linearize()
        return minimize_bounded(
            oracle, bounds, gtol, 500 if maxiter is None else maxiter, callback, report, result
        )
    if isinstance(optimizer, LBFGS):
        oracle.linearize()
        return _minimize_lbfgs(
            optimizer,
            oracle,
            options,
            gtol,
            500 if maxiter is None else maxiter,
            callback,
            display,
            report,
            result,
            compiled,
        )
    oracle = _compile(oracle) if compiled else oracle.linearize()

    maxiter = min(200 * n, MAX_NEWTON_ITERATIONS) if maxiter is None else maxiter
    for k in range(maxiter):
        value = float(oracle.value())
        if not math.isfinite(value):
            return result("non-finite loss at the current point", False, 2, k)
        gradient_norm = _norm(flatten(oracle.gradient()))
        if not math.isfinite(gradient_norm):
            return result("non-finite gradient at the current point", False, 2, k)
        if gradient_norm < gtol or gradient_norm == 0:
            return result(
                "gradient norm below gtol" if gradient_norm < gtol else "zero gradient", True, 0, k
            )
        step = optimizer.step(oracle)
        report(dict(step.as_dict(), iteration=k + 1, gradient_norm=gradient_norm))
        # A rejected step leaves the point (and the oracle's linearization) unchanged;
        # a line search may have linearized at the accepted point already.
        if step.accepted and not step.linearized:
            oracle.linearize()
        if callback is not None and callback(result("running", False, 1, k + 1)):
            return result("stopped by the callback", False, 2, k + 1)
        line_search = isinstance(optimizer, LineSearchNewtonCG)
        if (
            line_search
            and step.accepted
            and step.update_l1 is not None
            and step.update_l1 <= xtol * n
        ):
            if step.negative_curvature:  # not a minimum: no PSD Hessian here
                return result(
                    "update below xtol along a direction of negative curvature "
                    "(not a minimum; the loss may be unbounded below)",
                    False,
                    2,
                    k + 1,
                )
            return result("update below xtol", True, 0, k + 1)
        if line_search and not step.accepted:
            return result(step.note or "step failed", False, 2, k + 1)
        damping = step.damping
        if damping is not None and damping > 1e12:
            return result("damping exceeded 1e12 without progress", False, 2, k + 1)
        radius = step.radius
        if radius is not None and radius < 1e-15:
            return result("trust radius collapsed", False, 2, k + 1)
    return result("iteration limit reached", False, 1, maxiter)


def _minimize_lbfgs(
    optimizer, oracle, options, gtol, maxiter, callback, display, report, result, compiled
):
    """L-BFGS in runs of `LBFGS_CHUNK` iterations of the loop, each resumed from the
    last one's results (the same iterates as one long run); an interrupt loses at most
    the run in progress. A callback and ``display`` see every iteration, from the
    run's trace. A `CurvatureOracle`'s runs are compiled (one ``tf.function``, traced
    once)."""
    if "tolerance" not in options:
        optimizer.tolerance = gtol
    gtol = optimizer.tolerance
    compiled = compiled and isinstance(oracle, CurvatureOracle)
    nit = 0
    results = None

    def current(message, success, status):
        oracle.linearize()  # the run leaves the oracle where it last evaluated
        return result(message, success, status, nit)

    # One record per iteration, as for the other methods: the value and gradient norm
    # where it started and the value it reached, from the run's trace (kept in the
    # graph, so watching costs no extra evaluations or graph calls).
    value, gradient_norm = float(oracle.value()), _norm(flatten(oracle.gradient()))
    while nit < maxiter:
        results = optimizer.run(
            oracle,
            max_iterations=min(LBFGS_CHUNK, maxiter - nit),
            refresh=False,
            compiled=compiled,
            keep_iterates=callback is not None,
        )
        count = optimizer.last_run_iterations
        # The trace to the host once per run; the per-iteration work below is numpy.
        trace: List[Any] = [
            None if a is None else a.numpy() for a in optimizer.last_run_trace or ()
        ]
        for j in range(count):
            value_after = float(trace[0][j])
            failed = bool(results.failed) and j == count - 1
            report(
                {
                    "iteration": nit + j + 1,
                    "value": value,
                    "gradient_norm": gradient_norm,
                    "value_after": value_after,
                    "accepted": not failed,
                }
            )
            value, gradient_norm = value_after, float(trace[1][j])
            if callback is None:
                continue
            x = _split(trace[2][j], oracle.variables)
            at = (x, value, _split(trace[3][j], oracle.variables))
            if callback(result("running", False, 1, nit + j + 1, at)):
                if j < count - 1:  # back to iterate j; the memory is past it
                    for variable, position in zip(oracle.variables, x):
                        variable.assign(tf.cast(position, variable.dtype))
                    optimizer.reset()
                nit += j + 1
                return current("stopped by the callback", False, 2)
        nit += count
        if bool(results.converged) or bool(results.failed) or count == 0:
            break
    if results is None:
        return current("iteration limit reached", False, 1)
    sup_norm = float(tf.reduce_max(tf.abs(results.objective_gradient)))
    if bool(results.failed):
        return current(
            "line search failed (or a non-finite loss); the variables hold the "
            "last finite accepted point",
            False,
            2,
        )
    if bool(results.converged):
        if sup_norm <= gtol:
            return current("converged: gradient sup-norm below gtol", True, 0)
        if optimizer.x_tolerance > 0 or optimizer.f_relative_tolerance > 0:
            return current("converged: change below x_tolerance or f_relative_tolerance", True, 0)
        return current(
            f"L-BFGS stopped making progress with gradient sup-norm {sup_norm:.3g} > gtol", False, 2
        )
    return current("iteration limit reached", False, 1)
