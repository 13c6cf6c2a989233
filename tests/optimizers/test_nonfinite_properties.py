"""Property tests: NaN/inf anywhere (loss, gradient, curvature product, trial loss, the
inputs of a batch) never leaves a non-finite weight, in `step`, `minimize` and `fit`."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctc_newton import CTCLoss, CurvatureOracle
from ctc_newton.optimizers import (
    LBFGS,
    GaussNewton,
    HessianFree,
    LineSearchNewtonCG,
    TrustRegionNewtonCG,
    minimize,
)

BAD = st.sampled_from([np.nan, np.inf, -np.inf])
SCHEDULES = st.dictionaries(st.integers(0, 60), BAD, max_size=12)
MAKERS = {
    "newton-cg": lambda: LineSearchNewtonCG(),
    "trust-ncg": TrustRegionNewtonCG,
    "gauss-newton": GaussNewton,
    "hessian-free": lambda: HessianFree(max_cg_iterations=8),
    "lbfgs": lambda: LBFGS(max_iterations=3),
}
# Example counts come from the hypothesis profile (tests/conftest.py).
PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Poisoned:
    """Stands for a value that turns NaN/inf on the scheduled calls."""

    def __init__(self, schedule):
        self.schedule, self.calls = schedule, 0

    def __call__(self):
        self.calls += 1
        return self.schedule.get(self.calls - 1, 0.0)


def least_squares(params, poison):
    t = tf.constant(np.linspace(0, 1, 10))
    observed = 2.0 * tf.exp(-1.5 * t)
    return CurvatureOracle.from_outputs(
        lambda: params[0] * tf.exp(params[1] * t) - observed + poison(),
        lambda r: 0.5 * tf.reduce_sum(r**2),
        [params],
    )


class PoisonedOracle:
    """An oracle whose value, gradient, curvature products and trial losses turn
    non-finite on scheduled calls."""

    def __init__(self, oracle, schedule):
        self._oracle, self._poison = oracle, Poisoned(schedule)

    def __getattr__(self, name):
        return getattr(self._oracle, name)

    def value(self):
        return self._oracle.value() + self._poison()

    def evaluate(self):
        return self._oracle.evaluate() + self._poison()

    def gradient(self):
        return [g + self._poison() for g in self._oracle.gradient()]

    def curvature_vector_product(self, vector, kind="gauss_newton"):
        return [p + self._poison() for p in self._oracle.curvature_vector_product(vector, kind)]


@pytest.mark.parametrize("name", sorted(MAKERS))
@PROPERTY
@given(schedule=SCHEDULES)
def test_steps_never_write_a_nonfinite_weight(name, schedule):
    params = tf.Variable([1.0, -1.0], dtype=tf.float64)
    oracle = PoisonedOracle(least_squares(params, lambda: 0.0), schedule)
    optimizer = MAKERS[name]()
    for _ in range(4):
        before = params.numpy().copy()
        record = optimizer.step(oracle.linearize() and oracle)
        assert np.all(np.isfinite(params.numpy())), (record, schedule)
        if not record.accepted:
            np.testing.assert_array_equal(params.numpy(), before)


@pytest.mark.parametrize("method", sorted(MAKERS))
@PROPERTY
@given(schedule=SCHEDULES)
def test_minimize_never_ends_at_a_nonfinite_point(method, schedule):
    params = tf.Variable([1.0, -1.0], dtype=tf.float64)
    poison = Poisoned(schedule)
    if method in ("gauss-newton", "hessian-free"):
        result = minimize(least_squares(params, poison), method=method, maxiter=8)
    else:
        result = minimize(
            lambda: tf.reduce_sum((params - 1.0) ** 4) + params[0] * params[1] + poison(),
            [params],
            method=method,
            maxiter=8,
        )
    assert np.all(np.isfinite(params.numpy()))
    if result.success:
        assert np.isfinite(result.fun)


@pytest.mark.parametrize("name", sorted(MAKERS))
@settings(PROPERTY, max_examples=max(2, settings.default.max_examples // 2))  # fits are slow
@given(
    cells=st.dictionaries(
        st.tuples(st.integers(0, 31), st.integers(0, 7)), BAD, min_size=1, max_size=4
    )
)
def test_fit_with_nonfinite_inputs_never_writes_a_nonfinite_weight(name, cells):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 8, 3)).astype(np.float32)
    y = rng.integers(1, 4, size=(32, 2)).astype(np.int32)
    for (row, frame), value in cells.items():
        x[row, frame, 1] = value
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8, 3)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(4)]
    )
    model.compile(optimizer=MAKERS[name](), loss=CTCLoss())
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert all(np.all(np.isfinite(w.numpy())) for w in model.trainable_variables)
