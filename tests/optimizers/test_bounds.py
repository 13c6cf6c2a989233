"""minimize(..., bounds=...) for L-BFGS: scipy's L-BFGS-B on the compiled loss."""

import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf

from ctc_newton import minimize
from ctc_newton.optimizers._bounded import flat_bounds


def rosenbrock(x):
    return tf.reduce_sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def test_bounded_rosenbrock_matches_scipy_and_leaves_the_variables_feasible():
    bounds = [(-2.0, 0.5), (None, 2.0), (-2.0, None)]
    reference = scipy.optimize.minimize(
        scipy.optimize.rosen,
        [-1.2, 1.0, 1.0],
        jac=scipy.optimize.rosen_der,
        method="L-BFGS-B",
        bounds=bounds,
    )
    x = tf.Variable([-1.2, 1.0, 1.0], dtype=tf.float64)
    result = minimize(lambda: rosenbrock(x), [x], method="lbfgs", bounds=bounds)
    assert result.success, result.message
    np.testing.assert_allclose(result.x[0], reference.x, atol=1e-6)
    assert x.numpy()[0] <= 0.5 and x.numpy()[0] == pytest.approx(0.5)  # active bound
    assert result.fun == pytest.approx(reference.fun, rel=1e-8)
    assert result.history and result.history[-1]["iteration"] == result.nit


def test_bounds_forms_a_callback_stop_and_clear_errors():
    lower, upper = flat_bounds((0.0, None), 3)
    np.testing.assert_array_equal(lower, [0, 0, 0])
    assert np.all(np.isinf(upper))
    lower, upper = flat_bounds(scipy.optimize.Bounds(-1.0, [1.0, 2.0]), 2)
    np.testing.assert_array_equal(upper, [1, 2])
    with pytest.raises(ValueError, match="`bounds` must be .* or 3 pairs"):
        flat_bounds([(0, 1), (0, 1)], 3)
    with pytest.raises(ValueError, match="element 1 has lower 2.0 > upper 1.0"):
        flat_bounds([(0, 1), (2, 1)], 2)
    x = tf.Variable([3.0, 3.0], dtype=tf.float64)
    with pytest.raises(ValueError, match="`bounds` works with method='lbfgs'"):
        minimize(lambda: rosenbrock(x), [x], method="trust-ncg", bounds=(0, 1))
    result = minimize(
        lambda: rosenbrock(x),
        [x],
        method="lbfgs",
        bounds=(0.0, 1.5),
        callback=lambda state: state.nit >= 2,
    )
    assert result.message == "stopped by the callback" and result.nit == 2
    assert np.all((0 <= x.numpy()) & (x.numpy() <= 1.5))  # the start was clipped in


def test_an_interrupt_leaves_the_last_accepted_iterate():
    from tests.optimizers.test_failure_semantics import InterruptAt

    def run(n):
        x = tf.Variable([-1.2, 1.0], dtype=tf.float64)
        loss = InterruptAt(lambda: rosenbrock(x), n)
        points = [x.numpy().copy()]
        try:
            minimize(
                loss,
                [x],
                method="lbfgs",
                bounds=(-2.0, 0.8),
                maxiter=8,
                compiled=False,
                callback=lambda state: points.append(np.array(state.x[0])) and False,
            )
        except KeyboardInterrupt:
            return x.numpy(), points, True
        return x.numpy(), points, False

    # Eager, so that each evaluation calls the loss (a compiled one runs it only to trace).
    # The uninterrupted run records every accepted iterate; the others run the same path.
    _, accepted, interrupted = run(0)
    assert not interrupted and len(accepted) >= 4
    for n in (3, 5, 7, 9):  # inside line searches and callbacks, at different iterations
        x, _, interrupted = run(n)
        assert interrupted
        assert any(np.array_equal(x, p) for p in accepted), (n, x, accepted)
