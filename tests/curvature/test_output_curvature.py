"""The output-curvature registry: a loss not convex in its outputs plugs in its PSD form."""

import contextlib
import threading

import numpy as np
import pytest
import tensorflow as tf

from ctc_newton import CurvatureOracle
from ctc_newton.curvature import flatten, output_curvature, unflatten

_mode = threading.local()


@contextlib.contextmanager
def psd_wave():
    previous = getattr(_mode, "psd", False)
    _mode.psd = True
    try:
        yield
    finally:
        _mode.psd = previous


def wave(z):
    """``sum(sin(z))``: second derivative ``-sin(z)``, or ``|sin(z)|`` under `psd_wave`."""
    psd = getattr(_mode, "psd", False)

    @tf.custom_gradient
    def first_derivative(z, upstream):
        curvature = tf.abs(tf.sin(z)) if psd else -tf.sin(z)
        return upstream * tf.cos(z), lambda d: (d * upstream * curvature, d * tf.cos(z))

    @tf.custom_gradient
    def value(z):
        return tf.reduce_sum(tf.sin(z)), lambda upstream: first_derivative(z, upstream)

    return value(z)


def problem():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((16, 3)))
    w = tf.Variable(rng.standard_normal((3, 2)))
    oracle = CurvatureOracle.from_outputs(lambda: x @ w, lambda z: wave(z) / 16.0, [w])
    v = unflatten(tf.constant(rng.standard_normal(6)), [w])
    return oracle, x, w, v


def gauss_newton(x, w, v, curvature):
    """``J^T diag(curvature(z) / 16) J v`` for the linear model ``z = x w``."""
    z = x @ w
    return flatten([tf.transpose(x) @ (curvature(z) / 16.0 * (x @ v[0]))])


@pytest.fixture
def registered_wave():
    output_curvature.register("wave", psd_wave)
    yield
    output_curvature.unregister("wave")


def test_registered_loss_gives_its_psd_output_curvature(registered_wave):
    oracle, x, w, v = problem()
    expected = gauss_newton(x, w, v, lambda z: tf.abs(tf.sin(z)))
    for candidate in (oracle, oracle.compiled()):
        np.testing.assert_allclose(
            flatten(candidate.gauss_newton_vector_product(v)), expected, rtol=1e-12
        )
    # The value and gradient are the loss's own, switched or not.
    np.testing.assert_allclose(
        float(oracle.value()), float(tf.reduce_sum(tf.sin(x @ w))) / 16.0, rtol=1e-12
    )


def test_unregistered_loss_gets_its_exact_output_hessian():
    oracle, x, w, v = problem()
    assert "wave" not in output_curvature.registered()
    np.testing.assert_allclose(
        flatten(oracle.gauss_newton_vector_product(v)),
        gauss_newton(x, w, v, lambda z: -tf.sin(z)),
        rtol=1e-12,
    )


def test_ctc_is_registered_and_bad_entries_are_refused():
    assert "ctc" in output_curvature.registered()
    with pytest.raises(TypeError, match="`context` must be a callable"):
        output_curvature.register("bad", 3)
    with pytest.raises(KeyError, match="registered: .*'ctc'"):
        output_curvature.unregister("missing")
