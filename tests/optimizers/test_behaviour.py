"""Convergence rates, CTC training, Hessian-free ingredients, robustness, validation."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctc_newton import CTCLoss, CurvatureOracle
from ctc_newton.curvature import Oracle
from ctc_newton.optimizers import (
    LBFGS,
    GaussNewton,
    HessianFree,
    LineSearchNewtonCG,
    StepResult,
    TrustRegionNewtonCG,
    minimize,
)
from ctc_newton.optimizers import cg
from ctc_newton.optimizers.damping import martens_update, nielsen_update


def test_gauss_newton_converges_quadratically_on_zero_residual_least_squares():
    t = tf.constant(np.linspace(0, 1, 20))
    observed = 2.0 * tf.exp(-1.5 * t)
    params = tf.Variable([1.0, -1.0], dtype=tf.float64)
    oracle = CurvatureOracle.from_outputs(
        lambda: params[0] * tf.exp(params[1] * t) - observed,
        lambda r: 0.5 * tf.reduce_sum(r**2),
        [params],
    )
    result = minimize(oracle, method="gauss-newton", rule="nielsen", damping=1e-3, gtol=1e-14)
    np.testing.assert_allclose(params.numpy(), [2.0, -1.5], rtol=1e-10)
    norms = [h["gradient_norm"] for h in result.history]
    # Near the solution each gradient norm is about the square of the previous one.
    tail = [g for g in norms if g < 1e-2]
    assert len(tail) >= 2
    for a, b in zip(tail, tail[1:]):
        assert b <= 100 * a**2


def ctc_problem():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 10, 4)).astype(np.float32)
    y = rng.integers(1, 5, size=(16, 3)).astype(np.int32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((10, 4)), keras.layers.GRU(8, return_sequences=True), keras.layers.Dense(5)]
    )
    return model, x, y


@pytest.mark.parametrize(
    "make",
    [
        lambda: TrustRegionNewtonCG(),
        lambda: LineSearchNewtonCG(),
        lambda: GaussNewton(),
        lambda: HessianFree(),
        lambda: LBFGS(max_iterations=3),
    ],
)
def test_each_method_lowers_the_ctc_loss_steadily(make):
    model, x, y = ctc_problem()
    optimizer = make()
    values = []
    for _ in range(5):
        oracle = CurvatureOracle.from_keras(model, CTCLoss(), x, y)
        values.append(float(oracle.value()))
        step = optimizer.step(oracle)
        assert isinstance(step, StepResult) and step.value == pytest.approx(values[-1])
        logs = step.logs()  # what fit shows: the set, numeric, logged fields only
        assert logs["accepted"] == float(step.accepted) and "note" not in logs
        assert all(isinstance(v, float) for v in logs.values())
        if step.accepted:
            assert step.value_after <= step.value + 1e-6
    values.append(float(CurvatureOracle.from_keras(model, CTCLoss(), x, y).value()))
    assert all(b <= a + 1e-6 for a, b in zip(values, values[1:])), values
    assert values[-1] < 0.95 * values[0], values


def test_martens_cg_stopping_rule_and_backtracking_grid():
    assert cg.backtracking_schedule(20) == [1, 2, 3, 4, 5, 7, 9, 11, 14, 18]
    assert not cg.martens_should_stop(10, [0.0] + [-1.0] * 10)  # needs i > k = 10
    flat = [0.0] + [-(1 - 0.5**i) for i in range(1, 30)]
    assert cg.martens_should_stop(25, flat)  # no relative progress over k steps
    steady = [0.0] + [-float(i) for i in range(1, 30)]
    assert not cg.martens_should_stop(25, steady)  # still improving fast


def test_martens_cg_solves_a_spd_system_and_keeps_iterates():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((30, 30))
    a = tf.constant(a @ a.T + 30 * np.eye(30))
    b = tf.constant(rng.standard_normal(30))
    result = cg.martens(
        lambda v: tf.linalg.matvec(a, v),
        b,
        tf.zeros(30, tf.float64),
        250,
        epsilon=1e-15,
        tolerance=1e-12,
    )
    np.testing.assert_allclose(tf.linalg.matvec(a, result.step).numpy(), b.numpy(), atol=1e-9)
    kept = [i for i, _, _ in result.iterates()]
    assert kept[:5] == [1, 2, 3, 4, 5] and kept == sorted(kept)


def test_damping_rules():
    assert martens_update(1.0, 0.1) == 1.5
    assert martens_update(1.0, 0.9) == pytest.approx(2 / 3)
    assert martens_update(1.0, 0.5) == 1.0
    assert martens_update(1.0, float("nan")) == 1.5
    assert nielsen_update(1.0, 2.0, 0.5) == (pytest.approx(1.0), 2.0)
    assert nielsen_update(1.0, 2.0, 1.0) == (pytest.approx(1 / 3), 2.0)
    assert nielsen_update(1.0, 2.0, -1.0) == (2.0, 4.0)


def test_hessian_free_warm_start_and_preconditioner(monkeypatch):
    model, x, y = ctc_problem()
    optimizer = HessianFree(damping=0.5)
    starts, preconditioners = [], []
    original = cg.martens

    def spy(apply, b, x0, max_iterations, preconditioner=None, *args, **kwargs):
        starts.append(x0.numpy())
        preconditioners.append(preconditioner)
        return original(apply, b, x0, max_iterations, preconditioner, *args, **kwargs)

    monkeypatch.setattr(cg, "martens", spy)
    oracle = CurvatureOracle.from_keras(model, CTCLoss(), x, y)
    squared = np.concatenate([s.numpy().ravel() for s in oracle.squared_gradient_diagonal()])
    optimizer.step(oracle)
    first_solution = optimizer.previous_solution.numpy()
    np.testing.assert_allclose(preconditioners[0].numpy(), (squared + 0.5) ** 0.75, rtol=1e-5)
    assert np.all(starts[0] == 0)
    optimizer.step(CurvatureOracle.from_keras(model, CTCLoss(), x, y))
    np.testing.assert_allclose(starts[1], 0.95 * first_solution, rtol=1e-6)


class PoisonedOracle:
    """Wraps an oracle so that curvature products (or the loss) come back NaN."""

    def __init__(self, oracle, products=True):
        self._oracle, self._products = oracle, products

    def __getattr__(self, name):
        return getattr(self._oracle, name)

    def curvature_vector_product(self, vector, kind="gauss_newton"):
        out = self._oracle.curvature_vector_product(vector, kind)
        return [v * np.nan for v in out] if self._products else out

    def solve(self, key, fn, *args):  # an eager oracle: the solve sees the poisoned products
        return fn(self, *args)

    evaluate_at = Oracle.evaluate_at  # through the poisoned evaluate
    assign_flat = Oracle.assign_flat

    def evaluate(self):
        return tf.constant(np.nan) if not self._products else self._oracle.evaluate()


@pytest.mark.parametrize(
    "make,state",
    [
        (lambda: GaussNewton(damping=1.0), "damping"),
        (lambda: HessianFree(damping=1.0), "damping"),
        (lambda: TrustRegionNewtonCG(), "radius"),
    ],
)
@pytest.mark.parametrize("products", [True, False])
def test_nonfinite_curvature_or_loss_never_reaches_the_weights(make, state, products):
    model, x, y = ctc_problem()
    optimizer = make()
    before = [w.numpy().copy() for w in model.trainable_variables]
    oracle = PoisonedOracle(CurvatureOracle.from_keras(model, CTCLoss(), x, y), products)
    start = float(getattr(optimizer, state).numpy())
    record = optimizer.step(oracle)
    assert not record.accepted
    for old, new in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(old, new.numpy())
    after = float(getattr(optimizer, state).numpy())
    assert (after > start) if state == "damping" else (after < start)


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda: GaussNewton(damping=-1.0), "damping"),
        (lambda: HessianFree(damping=0.0), "damping"),
        (lambda: HessianFree(max_cg_iterations=0), "max_cg_iterations"),
        (lambda: GaussNewton(rule="other"), "rule"),
        (lambda: LineSearchNewtonCG(max_cg_iterations=0), "max_cg_iterations"),
        (lambda: TrustRegionNewtonCG(initial_radius=-1), "initial_radius"),
        (lambda: LBFGS(num_correction_pairs=0), "num_correction_pairs"),
        (lambda: minimize(lambda x: tf.reduce_sum(x**2), np.ones(2), method="adam"), "method"),
        (
            lambda: minimize(lambda x: tf.reduce_sum(x**2), np.ones(2), method="gauss-newton"),
            "from_keras or from_outputs",
        ),
    ],
)
def test_bad_hyperparameters_raise(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_state_checkpoints_and_config_round_trips(tmp_path):
    model, x, y = ctc_problem()
    optimizer = HessianFree(damping=0.3)
    optimizer.step(CurvatureOracle.from_keras(model, CTCLoss(), x, y))
    path = tf.train.Checkpoint(optimizer=optimizer).save(str(tmp_path / "ckpt"))
    restored = HessianFree.from_config(optimizer.get_config())
    restored.build(model.trainable_variables)
    tf.train.Checkpoint(optimizer=restored).restore(path).assert_existing_objects_matched()
    assert float(restored.damping.numpy()) == float(optimizer.damping.numpy()) != 0.3
    np.testing.assert_array_equal(
        restored.previous_solution.numpy(), optimizer.previous_solution.numpy()
    )
    assert int(restored.iterations.numpy()) == 1


def test_minimize_result_callback_and_variables():
    w = tf.Variable([3.0, -2.0], dtype=tf.float64)
    seen = []
    result = minimize(
        lambda: tf.reduce_sum((w - 1.0) ** 4) + tf.reduce_sum(w**2),
        [w],
        method="trust-ncg",
        callback=lambda r: seen.append(r.fun),
    )
    assert result.success and len(seen) == result.nit
    assert all(
        k in result
        for k in (
            "x",
            "fun",
            "jac",
            "nit",
            "nfev",
            "njev",
            "nhev",
            "success",
            "status",
            "message",
            "history",
        )
    )
    assert {"value", "gradient_norm", "radius", "cg_iterations", "step_size", "rho"} <= set(
        result.history[0]
    )
    np.testing.assert_allclose(result.x[0], w.numpy())
    assert math.isclose(float(np.linalg.norm(result.jac[0])), 0.0, abs_tol=1e-5)
    stopped = minimize(
        lambda: tf.reduce_sum((w - 5.0) ** 4), [w], method="newton-cg", callback=lambda r: True
    )
    assert stopped.nit == 1 and not stopped.success


def test_structural_damping_enters_the_cg_matrix(monkeypatch):
    from ctc_newton.curvature import flatten, unflatten

    model, x, y = ctc_problem()
    hidden = keras.Model(model.inputs, model.layers[0].output)  # the GRU's states
    # Gauss-Newton of 1/2 |h|^2 / B: penalizes changes of the hidden states.
    structural = CurvatureOracle.from_outputs(
        lambda: hidden(x, training=True),
        lambda h: 0.5 * tf.reduce_sum(h**2) / len(x),
        model.trainable_variables,
    )
    oracle = CurvatureOracle.from_keras(model, CTCLoss(), x, y)
    with pytest.raises(ValueError, match="structural_oracle"):
        HessianFree(structural_damping=0.03).step(oracle)
    captured = []
    original = cg.martens

    def spy(apply, *args, **kwargs):
        captured.append(apply)
        return original(apply, *args, **kwargs)

    monkeypatch.setattr(cg, "martens", spy)
    optimizer = HessianFree(damping=0.7, structural_damping=0.5, preconditioner=False)
    v = tf.constant(np.random.default_rng(0).standard_normal(oracle.size), tf.float32)
    parts = unflatten(v, model.trainable_variables)
    expected = (
        flatten(oracle.gauss_newton_vector_product(parts))
        + 0.7 * v
        + 0.7 * 0.5 * flatten(structural.gauss_newton_vector_product(parts))
    )
    optimizer.step(oracle, structural_oracle=structural)
    np.testing.assert_allclose(captured[0](v).numpy(), expected.numpy(), rtol=1e-4, atol=1e-6)
