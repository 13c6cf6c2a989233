"""Stochastic Lanczos quadrature against dense eigenvalues of a known matrix."""

import numpy as np
import pytest
import tensorflow as tf

from ctc_newton.curvature import CurvatureOracle
from ctc_newton.curvature.spectrum import spectral_density


def _quadratic(n, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eigenvalues = np.concatenate([[-2.0], np.linspace(0.1, 5.0, n - 1)])
    a = (q * eigenvalues) @ q.T
    x = tf.Variable(rng.standard_normal(n))
    matrix = tf.constant(a)
    oracle = CurvatureOracle.from_function(
        lambda: 0.5 * tf.tensordot(x, tf.linalg.matvec(matrix, x), 1), [x]
    )
    return oracle, a, eigenvalues


def test_full_lanczos_finds_every_eigenvalue_and_the_quadrature_is_exact():
    oracle, a, eigenvalues = _quadratic(12)
    result = spectral_density(oracle, "hessian", num_steps=12, num_probes=2, seed=3)
    for p in range(2):
        np.testing.assert_allclose(np.sort(result.nodes[p]), np.sort(eigenvalues), atol=1e-8)
        np.testing.assert_allclose(result.weights[p].sum(), 1.0, atol=1e-12)
    # Gauss quadrature is exact for v^T A v and v^T A^2 v (independent of Lanczos' basis).
    probe = np.random.default_rng(3).choice([-1.0, 1.0], size=12)
    probe /= np.linalg.norm(probe)
    for power in (1, 2, 3):
        expected = probe @ np.linalg.matrix_power(a, power) @ probe
        np.testing.assert_allclose(
            result.weights[0] @ result.nodes[0] ** power, expected, rtol=1e-9
        )


def test_few_steps_bracket_the_spectrum_and_the_density_integrates_to_one():
    oracle, _, eigenvalues = _quadratic(40, seed=1)
    result = spectral_density(oracle, "hessian", num_steps=15, num_probes=3)
    assert result.nodes.shape == (3, 15)
    # Ritz values lie inside the spectrum, the extremes converge first.
    assert result.nodes.min() >= eigenvalues.min() - 1e-9
    assert result.nodes.max() <= eigenvalues.max() + 1e-9
    np.testing.assert_allclose(result.nodes.min(), eigenvalues.min(), atol=1e-3)
    grid = np.linspace(-4, 7, 4001)
    np.testing.assert_allclose(np.trapezoid(result.density(grid), grid), 1.0, atol=1e-3)


def test_an_invariant_subspace_stops_early_with_an_exact_rule():
    x = tf.Variable(np.ones(6))
    oracle = CurvatureOracle.from_function(lambda: tf.reduce_sum(3.0 * x**2), [x])  # A = 6 I
    result = spectral_density(oracle, "hessian", num_steps=5)
    np.testing.assert_allclose(result.nodes, 6.0)
    np.testing.assert_allclose(result.weights[0], [1, 0, 0, 0, 0], atol=1e-12)


@pytest.mark.parametrize("kwargs", [dict(num_steps=0), dict(num_probes=0)])
def test_bad_arguments(kwargs):
    oracle, _, _ = _quadratic(4)
    with pytest.raises(ValueError, match="num_"):
        spectral_density(oracle, "hessian", **kwargs)
