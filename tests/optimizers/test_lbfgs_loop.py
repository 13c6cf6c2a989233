"""The graph L-BFGS iteration: two-loop recursion, line search, cost per iteration."""

import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf
from hypothesis import given, strategies as st

import ctc_newton
from ctc_newton.optimizers import _lbfgs_loop, minimize


def dense_bfgs_direction(pairs, gradient):
    """-H g with H from the BFGS inverse update applied pair by pair to gamma I
    (Nocedal & Wright eq. 6.17), the matrix the two-loop recursion applies."""
    s, y = pairs[-1]
    n = gradient.shape[0]
    h = (s @ y) / (y @ y) * np.eye(n)
    for s, y in pairs:
        rho = 1 / (s @ y)
        v = np.eye(n) - rho * np.outer(y, s)
        h = v.T @ h @ v + rho * np.outer(s, s)
    return -h @ gradient


@given(seed=st.integers(0, 2**16), filled=st.integers(1, 5))
def test_search_direction_is_the_bfgs_inverse_times_the_gradient(seed, filled):
    rng = np.random.default_rng(seed)
    n, m = 6, 4
    a = rng.standard_normal((n, n))
    hessian = a @ a.T + n * np.eye(n)  # pairs of a convex quadratic: s.y > 0
    pairs = [(s, hessian @ s) for s in rng.standard_normal((filled, n))]
    kept = pairs[-m:]
    queue = np.zeros((2, m, n))
    for i, (s, y) in enumerate(kept):
        queue[0, m - len(kept) + i], queue[1, m - len(kept) + i] = s, y
    g = rng.standard_normal(n)
    state = _lbfgs_loop.initial_state(
        tf.zeros(n, tf.float64), tf.constant(0.0, tf.float64), tf.constant(g), m, 0.0
    )
    state = state._replace(
        num_iterations=tf.constant(filled),
        position_deltas=tf.constant(queue[0]),
        gradient_deltas=tf.constant(queue[1]),
    )
    np.testing.assert_allclose(
        _lbfgs_loop.search_direction(state).numpy(),
        dense_bfgs_direction(kept, g),
        rtol=1e-9,
        atol=1e-12,
    )


def rosenbrock(x):
    return tf.reduce_sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def test_iterations_cost_about_one_evaluation_like_scipy():
    # tfp's Hager-Zhang search spends about three evaluations per iteration; the
    # strong Wolfe test of the unit step first brings it to scipy's L-BFGS-B cost.
    x0 = np.tile([-1.2, 1.0], 5)
    v = tf.Variable(x0)
    ours = minimize(lambda: rosenbrock(v), [v], method="lbfgs", gtol=1e-8)
    reference = scipy.optimize.minimize(
        scipy.optimize.rosen,
        x0,
        method="L-BFGS-B",
        jac=scipy.optimize.rosen_der,
        options=dict(gtol=1e-8),
    )
    assert ours.success, ours.message
    np.testing.assert_allclose(ours.x[0], np.ones(10), atol=1e-6)
    assert ours.nit <= 1.5 * reference.nit, (ours.nit, reference.nit)
    assert ours.nfev <= 1.5 * reference.nfev, (ours.nfev, reference.nfev)
    assert ours.nfev <= 1.3 * ours.nit + 2, (ours.nfev, ours.nit)


def test_a_callback_sees_every_iterate_without_extra_evaluations():
    x0 = np.tile([-1.2, 1.0], 3)
    v = tf.Variable(x0)
    plain = minimize(lambda: rosenbrock(v), [v], method="lbfgs", maxiter=30)
    v.assign(x0)
    seen = []
    watched = minimize(lambda: rosenbrock(v), [v], method="lbfgs", maxiter=30, callback=seen.append)
    # The same iterates, and the callback's states cost no evaluations of their own.
    np.testing.assert_allclose(watched.x[0], plain.x[0], rtol=1e-12)
    assert (watched.nit, watched.nfev) == (plain.nit, plain.nfev)
    assert [state.nit for state in seen] == list(range(1, watched.nit + 1))
    for state in seen:  # each state's loss and gradient are those at its x
        x = tf.constant(state.x[0])
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = rosenbrock(x)
        np.testing.assert_allclose(state.fun, float(value), rtol=1e-12)
        np.testing.assert_allclose(state.jac[0], tape.gradient(value, x).numpy(), rtol=1e-9)


def test_history_has_one_record_per_iteration_and_a_callback_can_stop_mid_run():
    x0 = np.tile([-1.2, 1.0], 3)
    v = tf.Variable(x0)
    full = minimize(lambda: rosenbrock(v), [v], method="lbfgs", maxiter=30)  # unwatched
    assert [r["iteration"] for r in full.history] == list(range(1, full.nit + 1))
    for before, after in zip(full.history, full.history[1:]):
        assert after["value"] == before["value_after"]
    assert full.history[-1]["value_after"] == full.fun

    # Iteration 7 is inside the first compiled run of 20: the variables go back to it.
    v.assign(x0)
    seen = []
    minimize(lambda: rosenbrock(v), [v], method="lbfgs", maxiter=30, callback=seen.append)
    v.assign(x0)
    stopped = minimize(
        lambda: rosenbrock(v), [v], method="lbfgs", maxiter=30, callback=lambda r: r.nit == 7
    )
    assert stopped.message == "stopped by the callback" and stopped.nit == 7
    np.testing.assert_allclose(stopped.x[0], seen[6].x[0], rtol=1e-12)
    np.testing.assert_allclose(v.numpy(), seen[6].x[0], rtol=1e-12)
    np.testing.assert_allclose(stopped.fun, seen[6].fun, rtol=1e-12)


def test_line_search_backs_off_where_the_loss_is_not_finite():
    # log(1 - x^2) is NaN beyond |x| = 1, where the first unit step lands.
    v = tf.Variable([0.0], dtype=tf.float64)
    assert ctc_newton.minimize is minimize  # also importable from the top level
    result = ctc_newton.minimize(
        lambda: tf.reduce_sum((v - 0.9) ** 2 - tf.math.log(1 - v**2)), [v], method="lbfgs"
    )
    exact = scipy.optimize.minimize_scalar(
        lambda x: (x - 0.9) ** 2 - np.log(1 - x * x),
        bounds=(-0.999, 0.999),
        method="bounded",
        options=dict(xatol=1e-10),
    )
    assert result.success, result.message
    assert np.isfinite(result.fun)
    np.testing.assert_allclose(result.x[0], [exact.x], atol=1e-6)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_line_search_finds_strong_wolfe_points(scale):
    # A 1-D quartic along the steepest-descent direction, at several step scales:
    # whatever the trial step, the point returned satisfies both Wolfe conditions.
    def value_and_gradients(x):
        return tf.reduce_sum(scale * x**4 - x), 4 * scale * x**3 - 1

    position = tf.constant([0.3], tf.float64)
    value, gradient = value_and_gradients(position)
    state = _lbfgs_loop.initial_state(position, value, gradient, 3, 0.0)._replace(
        num_iterations=tf.constant(1)
    )  # a unit trial step, as with a memory
    direction = -gradient
    point, evaluations, found = _lbfgs_loop._line_search(value_and_gradients, state, direction, 50)
    slope = float(tf.reduce_sum(gradient * direction))
    assert bool(found)
    assert float(point.f) <= float(value) + 1e-4 * float(point.x) * slope
    assert abs(float(point.df)) <= 0.9 * abs(slope)
    assert int(evaluations) <= 50
