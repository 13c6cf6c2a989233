"""CG solvers: the same answers eagerly, traced as a while_loop, and traced unrolled."""

import numpy as np
import pytest
import tensorflow as tf

from ctc_newton.optimizers import cg


def problem(seed, definite):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((12, 12))
    a = a @ a.T + (12 * np.eye(12) if definite else -4 * np.eye(12))
    return tf.constant(a), tf.constant(rng.standard_normal(12))


SOLVERS = {
    "martens": lambda apply, g, cap: cg.martens(apply, -g, tf.zeros_like(g), cap),
    "steihaug": lambda apply, g, cap: cg.steihaug(apply, g, tf.constant(2.0, g.dtype), cap),
    "truncated": lambda apply, g, cap: cg.truncated(apply, g, cap, 1e-12),
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
@pytest.mark.parametrize("cap", [3, cg.UNROLL_LIMIT, 30])  # unrolled, unrolled, while_loop
@pytest.mark.parametrize("definite", [True, False])
def test_traced_solves_equal_the_eager_solve(name, cap, definite):
    if name == "martens" and not definite:
        pytest.skip("Martens' CG is for positive definite systems")
    a, g = problem(cap, definite)

    def solve(a, g):
        return SOLVERS[name](lambda v: tf.linalg.matvec(a, v), g, cap)

    eager, traced = solve(a, g), tf.function(solve)(a, g)
    np.testing.assert_allclose(traced.step, eager.step, rtol=1e-10, atol=1e-12)
    assert int(traced.iterations) == int(eager.iterations)
    assert bool(traced.negative_curvature) == bool(eager.negative_curvature)
    np.testing.assert_allclose(
        float(traced.model_value), float(eager.model_value), rtol=1e-10, atol=1e-12
    )
    if name == "martens":
        assert [i for i, _, _ in traced.iterates()] == [i for i, _, _ in eager.iterates()]
