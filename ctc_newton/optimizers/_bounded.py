"""Bound-constrained L-BFGS for `minimize`: scipy's L-BFGS-B on the oracle's compiled
value and gradient (one graph call per evaluation; scipy does the projections)."""

import math

import numpy as np
import scipy.optimize
import tensorflow as tf


def flat_bounds(bounds, size: int):
    """``(lower, upper)`` float64 arrays of length ``size`` (``-inf``/``inf``: free).

    Args:
      bounds: a ``scipy.optimize.Bounds``, one ``(low, high)`` pair for every
        element, or ``size`` pairs (None in a pair: unbounded on that side).
      size: the number of optimized elements.

    Raises:
      ValueError: a shape that fits neither form, or a lower bound above its upper.
    """
    if isinstance(bounds, scipy.optimize.Bounds):
        lower, upper = bounds.lb, bounds.ub
    else:
        pairs = np.array(bounds, dtype=object)
        if pairs.shape == (2,):
            pairs = np.tile(pairs, (size, 1))
        if pairs.shape != (size, 2):
            raise ValueError(
                f"`bounds` must be a scipy.optimize.Bounds, one (low, high) pair, "
                f"or {size} pairs (one per element of x); got shape "
                f"{pairs.shape}."
            )
        lower = [-math.inf if low is None else low for low in pairs[:, 0]]
        upper = [math.inf if high is None else high for high in pairs[:, 1]]
    lower = np.broadcast_to(np.asarray(lower, np.float64), (size,)).copy()
    upper = np.broadcast_to(np.asarray(upper, np.float64), (size,)).copy()
    if np.any(lower > upper) or np.any(np.isnan(lower)) or np.any(np.isnan(upper)):
        first = int(np.argmax((lower > upper) | np.isnan(lower) | np.isnan(upper)))
        raise ValueError(
            f"`bounds`: element {first} has lower {lower[first]} > upper "
            f"{upper[first]} (or a NaN bound)."
        )
    return lower, upper


def minimize_bounded(oracle, bounds, gtol, maxiter, callback, report, result):
    """L-BFGS-B from the oracle's point within ``bounds``; see `minimize`.

    A non-finite loss counts as +inf (the line search steps back); the variables
    are left at scipy's final iterate, which is feasible and finite. If anything
    raises (Ctrl-C too) they are put back at the last accepted iterate first.
    """
    lower, upper = flat_bounds(bounds, oracle.size)
    dtype = tf.as_dtype(oracle.variables[0].dtype)
    iterations = 0
    start = oracle.flat_position().numpy().astype(np.float64)
    accepted = start  # until the first iteration: where the variables were

    def value_and_gradient(x):
        oracle.assign_flat(tf.constant(x, dtype))
        oracle.linearize()
        value = float(oracle.value())
        gradient = oracle.flat_gradient().numpy().astype(np.float64)
        if not (math.isfinite(value) and np.all(np.isfinite(gradient))):
            return math.inf, np.zeros_like(gradient)
        return value, gradient

    def watch(intermediate_result):
        nonlocal iterations, accepted
        iterations += 1
        accepted = np.array(intermediate_result.x)  # scipy updates its x in place
        report({"iteration": iterations, "value": float(intermediate_result.fun)})
        if callback is not None:
            oracle.assign_flat(tf.constant(intermediate_result.x, dtype))
            oracle.linearize()
            if callback(result("running", False, 1, iterations)):
                raise StopIteration

    try:
        outcome = scipy.optimize.minimize(
            value_and_gradient,
            np.clip(start, lower, upper),
            jac=True,
            method="L-BFGS-B",
            bounds=scipy.optimize.Bounds(lower, upper),
            callback=watch,
            options=dict(maxiter=maxiter, gtol=gtol),
        )
    except BaseException:
        oracle.assign_flat(tf.constant(accepted, dtype))
        raise
    oracle.assign_flat(tf.constant(outcome.x, dtype))
    oracle.linearize()
    if outcome.status == 99 or "callback" in str(outcome.message).lower():
        return result("stopped by the callback", False, 2, iterations)
    message = f"L-BFGS-B: {outcome.message}"
    return result(
        message,
        bool(outcome.success),
        0 if outcome.success else (1 if outcome.status == 1 else 2),
        int(outcome.nit),
    )
