"""Levenberg-Marquardt and least-squares oracles, against scipy's MINPACK ``lm``."""

import keras
import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf

from ctc_newton import CurvatureOracle, minimize
from ctc_newton.curvature import flatten, unflatten
from ctc_newton.optimizers import LevenbergMarquardt


def decay_data():
    """``y = 2.5 exp(-1.3 t) + 0.5`` with noise: a non-zero-residual fit."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 4, 40)
    return t, 2.5 * np.exp(-1.3 * t) + 0.5 + 0.02 * rng.standard_normal(t.shape)


def decay_residuals(p, t, y):
    return p[0] * np.exp(-p[1] * t) + p[2] - y


def test_from_residuals_value_gradient_products_and_jacobian():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((6, 3)), rng.standard_normal(4)
    x = tf.Variable(rng.standard_normal(3))
    w = tf.Variable(rng.standard_normal(2))
    # Two residual tensors, the second weighted 4 (scaled by 2): r = [a x - 1, 2 (w w^T)...]
    oracle = CurvatureOracle.from_residuals(
        lambda: [tf.linalg.matvec(a, x) - 1.0, tf.concat([w * w, w], 0) - b],
        [x, w],
        weights=[1.0, 4.0],
    )
    r1 = a @ x.numpy() - 1.0
    wv = w.numpy()
    r2 = np.concatenate([wv * wv, wv]) - b
    assert float(oracle.value()) == pytest.approx(0.5 * (r1 @ r1 + 4 * r2 @ r2), rel=1e-12)
    jacobian = np.zeros((10, 5))
    jacobian[:6, :3] = a
    jacobian[6:, 3:] = 2 * np.vstack([np.diag(2 * wv), np.eye(2)])
    residuals = np.concatenate([r1, 2 * r2])
    got_jacobian, got_residuals = oracle.residual_jacobian()
    np.testing.assert_allclose(got_jacobian, jacobian, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got_residuals, residuals, rtol=1e-12)
    np.testing.assert_allclose(flatten(oracle.gradient()), jacobian.T @ residuals, rtol=1e-12)
    v = rng.standard_normal(5)
    np.testing.assert_allclose(
        flatten(oracle.gauss_newton_vector_product(unflatten(tf.constant(v), [x, w]))),
        jacobian.T @ jacobian @ v,
        rtol=1e-12,
    )
    assert oracle.supports_residual_jacobian and oracle.compiled().supports_residual_jacobian
    plain = CurvatureOracle.from_function(lambda: tf.reduce_sum(x**2), [x])
    assert not plain.supports_residual_jacobian
    with pytest.raises(ValueError, match="from_residuals"):
        CurvatureOracle.from_outputs(lambda: x, lambda o: tf.reduce_sum(o), [x]).residual_jacobian()
    with pytest.raises(ValueError, match="`weights` must be finite and >= 0"):
        CurvatureOracle.from_residuals(lambda: x, [x], weights=[-1.0])


@pytest.mark.parametrize("dense_limit", [4000, 0])  # dense Cholesky, and CG on products
def test_reaches_scipy_lm_solution_on_a_curve_fit(dense_limit):
    t, y = decay_data()
    start = np.array([1.0, 0.5, 0.0])
    reference = scipy.optimize.least_squares(
        decay_residuals, start, method="lm", args=(t, y), xtol=1e-14, ftol=1e-14, gtol=1e-14
    )
    p = tf.Variable(start)
    tt, yy = tf.constant(t), tf.constant(y)
    oracle = CurvatureOracle.from_residuals(lambda: p[0] * tf.exp(-p[1] * tt) + p[2] - yy, [p])
    result = minimize(oracle, method="levenberg-marquardt", gtol=1e-10, dense_limit=dense_limit)
    assert result.success, result.message
    np.testing.assert_allclose(result.x[0], reference.x, rtol=1e-7)
    assert result.fun == pytest.approx(reference.cost, rel=1e-10)
    # Same order of work as MINPACK (its nfev counts Jacobian columns by differences too).
    assert result.nit <= 30


def test_rosenbrock_residuals_converge_from_the_classic_start():
    x = tf.Variable([-1.2, 1.0], dtype=tf.float64)
    oracle = CurvatureOracle.from_residuals(
        lambda: tf.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]]), [x]
    )
    result = minimize(oracle, method="levenberg-marquardt", gtol=1e-10)
    reference = scipy.optimize.least_squares(
        lambda v: [10 * (v[1] - v[0] ** 2), 1 - v[0]], [-1.2, 1.0], method="lm"
    )
    assert result.success, result.message
    np.testing.assert_allclose(result.x[0], [1.0, 1.0], atol=1e-8)
    np.testing.assert_allclose(reference.x, [1.0, 1.0], atol=1e-6)
    assert result.nit <= 2 * reference.nfev


def test_a_nonfinite_trial_is_rejected_and_raises_the_damping():
    x = tf.Variable([1.0], dtype=tf.float64)
    # r = log(x) + 5: the undamped Gauss-Newton step from x = 1 is -5, where log is NaN.
    oracle = CurvatureOracle.from_residuals(lambda: tf.math.log(x) + 5.0, [x])
    optimizer = LevenbergMarquardt(damping=1e-12)
    step = optimizer.step(oracle)
    assert not step.accepted and "non-finite" in step.note
    assert float(x.numpy()[0]) == 1.0
    assert float(optimizer.damping.numpy()) > 1e-12
    result = minimize(oracle.linearize(), method="levenberg-marquardt", gtol=1e-10)
    assert result.success, result.message
    np.testing.assert_allclose(result.x[0], [np.exp(-5.0)], rtol=1e-8)


def test_keras_fit_and_save_load_on_a_regression():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, 2))
    y = np.sin(2 * x[:, :1]) * x[:, 1:]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=LevenbergMarquardt(damping=1e-2, max_cg_iterations=20), loss="mse")
    history = model.fit(x, y, batch_size=64, epochs=15, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.2 * losses[0], losses
    config = model.optimizer.get_config()
    assert LevenbergMarquardt.from_config(config).get_config() == config
