"""GraphOracle: the compiled oracle matches the tape oracle; whole solves in one call."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctc_newton import CTCLoss, CurvatureOracle
from ctc_newton.curvature import flatten, keras_oracle, unflatten
from ctc_newton.curvature.base import Oracle
from ctc_newton.curvature.compiled import KerasCurvature
from ctc_newton.curvature.graph import GraphOracle
from ctc_newton.optimizers import _flat, cg, minimize


def regression():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((32, 3)))
    y = tf.constant(rng.standard_normal((32, 1)))
    w1 = tf.Variable(rng.standard_normal((3, 5)) * 0.5)
    w2 = tf.Variable(rng.standard_normal((5, 1)) * 0.5)
    tape = CurvatureOracle.from_outputs(
        lambda: tf.tanh(x @ w1) @ w2,
        lambda out: tf.reduce_mean((out - y) ** 2),
        [w1, w2],
        regularization_fn=lambda: 1e-3 * tf.reduce_sum(w1**2),
    )
    return tape, [w1, w2]


def test_graph_oracle_matches_the_tape_oracle_at_every_point():
    tape, variables = regression()
    graph = tape.compiled()
    assert isinstance(graph, GraphOracle) and isinstance(graph, Oracle)
    assert graph.supports_gauss_newton and not graph.supports_squared_gradients
    v = unflatten(tf.constant(np.linspace(-1, 1, tape.size)), variables)
    for _ in range(2):  # at the start, then after the variables moved
        tape.linearize()
        graph.linearize()
        np.testing.assert_allclose(float(graph.value()), float(tape.value()), rtol=1e-12)
        np.testing.assert_allclose(
            flatten(graph.gradient()), flatten(tape.gradient()), rtol=1e-10, atol=1e-14
        )
        for kind in ("hessian", "gauss_newton"):
            np.testing.assert_allclose(
                flatten(graph.curvature_vector_product(v, kind)),
                flatten(tape.curvature_vector_product(v, kind)),
                rtol=1e-10,
                atol=1e-14,
            )
        variables[0].assign_add(0.1 * tf.ones_like(variables[0]))
    with pytest.raises(ValueError, match="per-example"):
        graph.squared_gradient_diagonal()


def gauss_newton_solve(o, gradient, damping):
    curvature = _flat.FlatProblem(o).product("gauss_newton")
    return cg.martens(
        lambda v: curvature(v) + damping * v,
        -gradient,
        tf.zeros_like(gradient),
        50,
        tolerance=1e-12,
    )


def test_a_solve_is_one_graph_call_traced_once_and_equal_to_the_eager_solve():
    tape, variables = regression()
    graph = tape.compiled()
    key = ("test", 50)
    for _ in range(2):
        tape.linearize()
        graph.linearize()
        gradient = flatten(tape.gradient())
        damping = tf.constant(0.1, tf.float64)
        eager = tape.solve(key, gauss_newton_solve, gradient, damping)
        before = graph.num_curvature_products
        compiled = graph.solve(key, gauss_newton_solve, gradient, damping)
        np.testing.assert_allclose(compiled.step, eager.step, rtol=1e-8, atol=1e-12)
        assert int(compiled.iterations) == int(eager.iterations)
        assert graph.num_curvature_products - before == int(eager.iterations)
        variables[1].assign_add(0.05 * tf.ones_like(variables[1]))
    traced = tape._graph_functions.solver(key, gauss_newton_solve)
    assert traced.experimental_get_tracing_count() == 1  # a new point does not retrace


@pytest.mark.parametrize("method", ["trust-ncg", "newton-cg", "gauss-newton", "hessian-free"])
def test_minimize_compiled_and_eager_take_the_same_steps(method):
    results = []
    for compiled in (True, False):
        tape, _ = regression()
        results.append(minimize(tape, method=method, maxiter=8, compiled=compiled))
    compiled, eager = results
    assert compiled.nit == eager.nit
    np.testing.assert_allclose(compiled.fun, eager.fun, rtol=1e-8)
    for a, b in zip(compiled.x, eager.x):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    assert [h["accepted"] for h in compiled.history] == [h["accepted"] for h in eager.history]


def test_minimize_runs_an_untraceable_loss_eagerly_with_a_warning():
    v = tf.Variable([1.0, -2.0], dtype=tf.float64)

    def numpy_inside():  # .numpy() cannot be traced
        return tf.reduce_sum((v - 0.5) ** 2) + 0.0 * float(v.numpy()[0])

    with pytest.warns(UserWarning, match="could not be traced"):
        result = minimize(numpy_inside, [v], method="trust-ncg")
    assert result.success, result.message
    np.testing.assert_allclose(result.x[0], [0.5, 0.5], atol=1e-6)


def test_capabilities_are_public_properties():
    tape, variables = regression()
    plain = CurvatureOracle.from_function(lambda: tf.reduce_sum(variables[0] ** 2), variables)
    assert tape.supports_gauss_newton and not tape.supports_squared_gradients
    assert not plain.supports_gauss_newton and not plain.compiled().supports_gauss_newton
    model = keras.Sequential([keras.Input((4, 3)), keras.layers.Dense(5)])
    x = tf.random.normal((2, 4, 3))
    y = tf.constant([[1, 2], [3, 0]])
    for compiled in (False, True):
        oracle = keras_oracle(model, CTCLoss(), x, y, compiled=compiled)
        assert isinstance(oracle, GraphOracle if compiled else CurvatureOracle)
        assert oracle.supports_gauss_newton and oracle.supports_squared_gradients


def test_keras_traces_are_shared_by_equal_losses_not_by_object_identity():
    model = keras.Sequential([keras.Input((4, 3)), keras.layers.Dense(5)])
    assert KerasCurvature.get(model, CTCLoss()) is KerasCurvature.get(model, CTCLoss())
    assert KerasCurvature.get(model, CTCLoss()) is not KerasCurvature.get(
        model, CTCLoss(blank_index=4)
    )
    assert KerasCurvature.get(model, keras.losses.MeanSquaredError()) is not KerasCurvature.get(
        model, keras.losses.MeanAbsoluteError()
    )
