"""Every method on scipy's reference problems: same optimum, comparable iterations."""

import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf

from ctc_newton import CurvatureOracle
from ctc_newton.optimizers import minimize

SCIPY_METHOD = {"trust-ncg": "trust-ncg", "newton-cg": "Newton-CG", "lbfgs": "L-BFGS-B"}


def rosen_tf(x):
    return tf.reduce_sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


@pytest.mark.parametrize("method", ["trust-ncg", "newton-cg", "lbfgs"])
def test_rosenbrock_matches_scipy(method):
    x0 = np.array([-1.2, 1.0])
    ours = minimize(rosen_tf, x0, method=method)
    reference = scipy.optimize.minimize(
        scipy.optimize.rosen,
        x0,
        method=SCIPY_METHOD[method],
        jac=scipy.optimize.rosen_der,
        hessp=None if method == "lbfgs" else scipy.optimize.rosen_hess_prod,
    )
    assert ours.success, ours.message
    assert abs(ours.fun - reference.fun) < 1e-6
    np.testing.assert_allclose(ours.x, [1.0, 1.0], atol=1e-3)
    assert ours.nit <= 1.5 * reference.nit
    if method == "newton-cg":  # the line search's last evaluation is the next point's
        assert ours.nfev <= reference.nfev + 2, (ours.nfev, reference.nfev)
    assert [h["value"] for h in ours.history[:1]] == [pytest.approx(24.2)] or method == "lbfgs"


def rosenbrock_residuals():
    w = tf.Variable([-1.2, 1.0], dtype=tf.float64)
    return w, CurvatureOracle.from_outputs(
        lambda: tf.stack([10.0 * (w[1] - w[0] ** 2), 1.0 - w[0]]),
        lambda r: tf.reduce_sum(r**2),
        [w],
    )


@pytest.mark.parametrize(
    "method,options",
    [("gauss-newton", {}), ("gauss-newton", {"rule": "nielsen"}), ("hessian-free", {})],
)
def test_rosenbrock_least_squares_with_gauss_newton_methods(method, options):
    w, oracle = rosenbrock_residuals()
    result = minimize(oracle, method=method, gtol=1e-8, **options)
    assert result.success, result.message
    assert result.fun < 1e-12
    np.testing.assert_allclose(w.numpy(), [1.0, 1.0], atol=1e-6)
    values = [h["value"] for h in result.history]
    assert all(b <= a for a, b in zip(values, values[1:]))  # never goes up


LOGISTIC_OPTIMUM = 0.30009981


@pytest.fixture(scope="module")
def logistic():
    rs = np.random.RandomState(0)
    n, d, lam = 5000, 1000, 1e-4
    X = rs.standard_normal((n, d)) * np.logspace(0, -2, d)
    w_true = rs.standard_normal(d) * 0.3
    y = (rs.rand(n) < 1 / (1 + np.exp(-X @ w_true))).astype(np.float64)
    return X, y, lam


def logistic_oracle(X, y, lam):
    Xt, yt = tf.constant(X), tf.constant(y)
    w = tf.Variable(tf.zeros(X.shape[1], tf.float64))
    return CurvatureOracle.from_outputs(
        lambda: tf.linalg.matvec(Xt, w),
        lambda z: tf.reduce_mean(tf.nn.softplus(z) - yt * z),
        [w],
        regularization_fn=lambda: 0.5 * lam * tf.reduce_sum(w * w),
    )


def scipy_logistic(X, y, lam, method):
    def f(w):
        z = X @ w
        return np.mean(np.logaddexp(0, z) - y * z) + 0.5 * lam * w @ w

    def g(w):
        return X.T @ (1 / (1 + np.exp(-(X @ w))) - y) / len(y) + lam * w

    def hessp(w, v):
        s = 1 / (1 + np.exp(-(X @ w)))
        return X.T @ (s * (1 - s) * (X @ v)) / len(y) + lam * v

    return scipy.optimize.minimize(
        f, np.zeros(X.shape[1]), method=method, jac=g, hessp=None if method == "L-BFGS-B" else hessp
    )


@pytest.mark.parametrize(
    "method", ["trust-ncg", "newton-cg", "lbfgs", "gauss-newton", "hessian-free"]
)
def test_logistic_regression_reaches_the_optimum(logistic, method):
    X, y, lam = logistic
    result = minimize(logistic_oracle(X, y, lam), method=method)
    assert result.success, result.message
    if method == "lbfgs":
        # A gradient tolerance on an ill-conditioned problem bounds the loss only
        # loosely: as close as scipy's L-BFGS-B gets with the same gtol (1.6e-6
        # relative), within a small factor.
        reference = scipy_logistic(X, y, lam, SCIPY_METHOD[method])
        assert abs(result.fun - LOGISTIC_OPTIMUM) <= 3 * abs(reference.fun - LOGISTIC_OPTIMUM)
        assert np.max(np.abs(result.jac)) <= 1e-5
    else:
        assert abs(result.fun - LOGISTIC_OPTIMUM) <= 1e-6 * LOGISTIC_OPTIMUM
    if method in SCIPY_METHOD:
        reference = scipy_logistic(X, y, lam, SCIPY_METHOD[method])
        assert result.nit <= 1.5 * reference.nit, (result.nit, reference.nit)
