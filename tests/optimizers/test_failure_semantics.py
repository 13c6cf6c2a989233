"""minimize and the optimizers: honest results, no non-finite weights, interrupts."""

import math

import numpy as np
import pytest
import tensorflow as tf

from ctc_newton import CurvatureOracle
from ctc_newton.optimizers import HessianFree, LBFGS, minimize

METHODS = ["newton-cg", "trust-ncg", "lbfgs"]


def quartic(w):
    return tf.reduce_sum((w - 1.0) ** 4) + tf.reduce_sum(w**2) + w[0] * w[1]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "name,fn",
    [
        ("linear", lambda v: tf.reduce_sum(v)),
        ("concave", lambda v: -tf.reduce_sum(v**4)),
        ("-sq", lambda v: -tf.reduce_sum(v**2)),
    ],
)
def test_unbounded_problems_fail_honestly_with_finite_variables(method, name, fn):
    v = tf.Variable([1.0, 2.0], dtype=tf.float64)
    result = minimize(lambda: fn(v), [v], method=method, maxiter=100)
    assert not result.success and result.status != 0
    assert np.all(np.isfinite(v.numpy())) and math.isfinite(result.fun)
    np.testing.assert_array_equal(result.x[0], v.numpy())


def test_lbfgs_on_a_linear_function_reports_failure_at_its_last_accepted_point():
    v = tf.Variable([1.0, 2.0], dtype=tf.float64)
    seen = []
    result = minimize(
        lambda: tf.reduce_sum(v), [v], method="lbfgs", callback=lambda r: seen.append(r.x[0].copy())
    )
    assert not result.success and result.status == 2
    assert np.all(np.isfinite(v.numpy()))
    # The failed iteration went back to where it started: the last accepted point.
    np.testing.assert_array_equal(v.numpy(), seen[-2] if len(seen) > 1 else [1.0, 2.0])


def test_lbfgs_run_from_a_nonfinite_point_does_not_move_or_forget():
    v = tf.Variable([3.0, -2.0], dtype=tf.float64)
    poisoned = tf.Variable(0.0, dtype=tf.float64)
    oracle = CurvatureOracle.from_function(lambda: quartic(v) + poisoned, [v])
    optimizer = LBFGS(max_iterations=3)
    optimizer.step(oracle.linearize())
    memory = optimizer.position_deltas.numpy().copy()
    at = v.numpy().copy()
    poisoned.assign(np.nan)
    record = optimizer.step(oracle.linearize())
    assert not record.accepted and record.failed
    np.testing.assert_array_equal(v.numpy(), at)
    np.testing.assert_array_equal(optimizer.position_deltas.numpy(), memory)
    poisoned.assign(0.0)
    optimizer.step(oracle.linearize())
    assert np.all(np.isfinite(v.numpy())) and float(quartic(v)) < float(quartic(tf.constant(at)))


@pytest.mark.parametrize("method", ["trust-ncg", "newton-cg", "lbfgs"])
def test_a_zero_gradient_is_a_zero_step_and_a_success(method):
    v = tf.Variable([0.0, 0.0], dtype=tf.float64)
    result = minimize(lambda: tf.reduce_sum(v**2), [v], method=method, gtol=0.0)
    assert result.success and result.nit == 0
    np.testing.assert_array_equal(v.numpy(), [0.0, 0.0])


def test_nan_objective_is_not_success():
    v = tf.Variable([1.0, 2.0], dtype=tf.float64)
    for method in METHODS:
        result = minimize(
            lambda: tf.reduce_sum(v * 0) + tf.constant(np.nan, tf.float64), [v], method=method
        )
        assert not result.success and result.status == 2, method


def test_maxiter_zero_and_negative():
    v = tf.Variable([3.0, -2.0], dtype=tf.float64)
    for method in METHODS:
        result = minimize(lambda: quartic(v), [v], method=method, maxiter=0)
        assert result.nit == 0 and result.status == 1 and not result.success
        np.testing.assert_array_equal(v.numpy(), [3.0, -2.0])
        with pytest.raises(ValueError, match="`maxiter`"):
            minimize(lambda: quartic(v), [v], method=method, maxiter=-1)


def test_lbfgs_calls_back_and_displays_each_iteration_with_the_same_iterates(capsys):
    v = tf.Variable([3.0, -2.0], dtype=tf.float64)
    plain = minimize(lambda: quartic(v), [v], method="lbfgs")
    v.assign([3.0, -2.0])
    seen = []
    watched = minimize(
        lambda: quartic(v),
        [v],
        method="lbfgs",
        display=True,
        callback=lambda r: seen.append(float(r.fun)),
    )
    assert plain.success and watched.success and watched.nit == plain.nit
    assert len(seen) == watched.nit
    np.testing.assert_allclose(watched.x[0], plain.x[0], rtol=1e-12)
    assert capsys.readouterr().out.count("[lbfgs]") == watched.nit


def test_lbfgs_success_needs_a_small_gradient():
    v = tf.Variable([3.0, -2.0], dtype=tf.float64)
    result = minimize(lambda: quartic(v), [v], method="lbfgs", maxiter=2)
    assert not result.success and result.status == 1


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda: HessianFree(max_line_search_steps=0), "max_line_search_steps"),
        (lambda: minimize(lambda: tf.constant(1.0), []), "variables_or_x0"),
        (lambda: minimize(lambda: tf.constant(1.0), [], method="lbfgs"), "variables_or_x0"),
        (lambda: minimize(lambda: tf.constant(1.0), np.ones(2), gtol=float("nan")), "gtol"),
    ],
)
def test_bad_arguments_raise_naming_them(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_mixed_dtypes_raise_naming_the_argument():
    a = tf.Variable([1.0], dtype=tf.float32)
    b = tf.Variable([1.0], dtype=tf.float64)
    with pytest.raises(ValueError, match="`variables_or_x0` mixes dtypes"):
        minimize(lambda: tf.cast(tf.reduce_sum(a**2), tf.float64) + tf.reduce_sum(b**2), [a, b])


class InterruptAt:
    """A loss that raises KeyboardInterrupt on its n-th call."""

    def __init__(self, fn, n):
        self.fn, self.n, self.calls = fn, n, 0

    def __call__(self):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.fn()


def least_squares_oracle(v, loss):
    t = tf.constant(np.linspace(0, 1, 12))
    observed = 2.0 * tf.exp(-1.5 * t)
    return CurvatureOracle.from_outputs(
        lambda: (loss(), v[0] * tf.exp(v[1] * t) - observed)[1],
        lambda r: 0.5 * tf.reduce_sum(r**2),
        [v],
    )


@pytest.mark.parametrize("every", [6, pytest.param(1, marks=pytest.mark.slow)])
@pytest.mark.parametrize(
    "method", ["newton-cg", "trust-ncg", "lbfgs", "gauss-newton", "hessian-free"]
)
def test_an_interrupt_anywhere_leaves_the_last_accepted_point(method, every):
    def run(n):
        v = tf.Variable([1.0, -1.0], dtype=tf.float64)
        loss = InterruptAt(lambda: quartic(v), n)
        points = [v.numpy().copy()]
        try:
            args = (
                (least_squares_oracle(v, loss),)
                if method in ("gauss-newton", "hessian-free")
                else (loss, [v])
            )

            def record(r):
                points.append(np.array(r.x[0]).reshape(-1).copy())

            # The reference run records the accepted points; the others run unobserved.
            # The slow variant runs eagerly, so that every evaluation is a Python call
            # to interrupt (compiled, the loss runs in Python only while it is traced).
            minimize(
                *args,
                method=method,
                maxiter=6,
                callback=record if n == 0 else None,
                compiled=every != 1,
            )
        except KeyboardInterrupt:
            return v.numpy(), points, True
        return v.numpy(), points, False

    _, accepted, _ = run(0)  # the uninterrupted run's accepted points
    interrupted = 0
    for n in range(1, 40, every):  # every loss evaluation (slow run) or every sixth
        now, _, stopped = run(n)
        interrupted += stopped
        assert stopped or n > 1
        assert any(np.array_equal(now, p) for p in accepted), (n, now)
    assert interrupted >= 10 // every


def test_lbfgs_compiles_a_traceable_loss_and_falls_back_for_one_that_is_not():
    v = tf.Variable([3.0, -2.0], dtype=tf.float64)
    compiled = minimize(lambda: quartic(v), [v], method="lbfgs")
    v.assign([3.0, -2.0])

    def numpy_inside():  # float() of a tensor cannot be traced
        return quartic(v) + 0.0 * float(tf.reduce_sum(v))

    with pytest.warns(UserWarning, match="could not be traced"):
        eager = minimize(numpy_inside, [v], method="lbfgs")
    assert compiled.success and eager.success and eager.nit == compiled.nit
    np.testing.assert_allclose(eager.x[0], compiled.x[0], rtol=1e-9)
