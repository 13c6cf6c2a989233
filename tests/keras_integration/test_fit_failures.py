"""fit never corrupts weights: bad batches, interrupts, infeasible sequences, resume."""

import warnings

import keras
import numpy as np
import pytest

from ctc_newton import CTCLoss
from ctc_newton.curvature.compiled import CompiledKerasOracle
from ctc_newton.keras_integration import InfeasibleSequenceWarning
from ctc_newton.optimizers import KFAC, LBFGS, GaussNewton, HessianFree, TrustRegionNewtonCG

OPTIMIZERS = {
    "hessian-free": HessianFree,
    "gauss-newton": GaussNewton,
    "trust-ncg": TrustRegionNewtonCG,
    "lbfgs": lambda: LBFGS(max_iterations=4),
    "kfac": KFAC,
}


def data(n=32, frames=8):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, frames, 3)).astype(np.float32)
    y = rng.integers(1, 4, size=(n, 2)).astype(np.int32)
    return x, y


def make_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((8, 3)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(4)]
    )


def weights(model):
    return [v.numpy().copy() for v in model.trainable_variables]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("bad", ["nan_input", "empty_labels", "zero_sample_weights"])
def test_a_bad_batch_never_puts_nan_into_the_weights(name, bad):
    x, y = data()
    sample_weight = np.ones(len(x), np.float32)
    if bad == "nan_input":
        x[3, 2, 1] = np.nan
    elif bad == "empty_labels":
        y[:16] = 0
    else:
        sample_weight[:16] = 0.0
    model = make_model()
    start = weights(model)
    model.compile(optimizer=OPTIMIZERS[name](), loss=CTCLoss())
    # The bad batch first, then a clean one (which is where NaN used to be written).
    model.fit(x, y, sample_weight=sample_weight, batch_size=16, epochs=1, shuffle=False, verbose=0)
    after = weights(model)
    assert all(np.all(np.isfinite(w)) for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(start, after))  # it still trains


class Interrupt:
    """Raises KeyboardInterrupt at the n-th loss evaluation of a fit's oracles."""

    def __init__(self, monkeypatch, n):
        self.calls, self.n = 0, n
        for method in ("evaluate", "evaluate_at", "linearize"):
            original = getattr(CompiledKerasOracle, method)
            monkeypatch.setattr(CompiledKerasOracle, method, self.wrap(original))

    def wrap(self, original):
        def method(oracle, *args, **kwargs):
            self.calls += 1
            if self.calls == self.n:
                raise KeyboardInterrupt
            return original(oracle, *args, **kwargs)

        return method


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize(
    "n",
    [
        3,
        pytest.param(2, marks=pytest.mark.slow),
        pytest.param(5, marks=pytest.mark.slow),
        pytest.param(9, marks=pytest.mark.slow),
    ],
)
def test_an_interrupt_leaves_the_last_accepted_weights(monkeypatch, name, n):
    x, y = data()
    model = make_model()
    model.compile(optimizer=OPTIMIZERS[name](), loss=CTCLoss())
    accepted = [weights(model)]
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: accepted.append(weights(model))
    )
    Interrupt(monkeypatch, n)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=16, epochs=20, shuffle=False, verbose=0, callbacks=[record])
    for now, then in zip(weights(model), accepted[-1]):
        np.testing.assert_array_equal(now, then)


def test_infeasible_sequences_are_reported_once_with_their_count():
    x, y = data()
    labels = np.zeros((len(x), 9), np.int32)
    labels[:, :2] = y
    labels[5] = [1, 2, 1, 2, 1, 2, 1, 2, 1]  # 9 labels cannot fit in 8 frames
    model = make_model()
    model.compile(optimizer=GaussNewton(), loss=CTCLoss())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, labels, batch_size=16, epochs=3, shuffle=False, verbose=0)
    said = [w for w in caught if issubclass(w.category, InfeasibleSequenceWarning)]
    assert len(said) == 1
    assert "1 of 16 sequences" in str(said[0].message)
    assert "zero_infinity=True" in str(said[0].message)

    model = make_model()  # the documented fix trains the whole batch
    start = weights(model)
    model.compile(optimizer=GaussNewton(), loss=CTCLoss(zero_infinity=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x[:16], labels[:16], batch_size=16, epochs=2, verbose=0)
    assert not [w for w in caught if issubclass(w.category, InfeasibleSequenceWarning)]
    assert any(not np.array_equal(a, b) for a, b in zip(start, weights(model)))


def test_lbfgs_resumes_its_memory_after_load_model(tmp_path):
    x, y = data()

    def fit(model, epochs):
        model.fit(x, y, batch_size=len(x), epochs=epochs, shuffle=False, verbose=0)

    continued = make_model()
    continued.compile(optimizer=LBFGS(max_iterations=3), loss=CTCLoss())
    fit(continued, 2)

    model = make_model()
    model.compile(optimizer=LBFGS(max_iterations=3), loss=CTCLoss())
    fit(model, 1)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert float(loaded.optimizer.has_memory.numpy()) == 1.0
    fit(loaded, 1)
    for a, b in zip(weights(loaded), weights(continued)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_newton_cg_on_an_all_infeasible_batch_under_zero_infinity_is_a_zero_step():
    x, _ = data(16)
    labels = np.tile(np.array([[1, 2, 1, 2, 1, 2, 1, 2, 1]], np.int32), (16, 1))
    model = make_model()
    start = weights(model)
    model.compile(optimizer=TrustRegionNewtonCG(), loss=CTCLoss(zero_infinity=True))
    history = model.fit(x, labels, batch_size=16, epochs=1, verbose=0)
    assert history.history["loss"] == [0.0]
    for a, b in zip(start, weights(model)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.1 * k for k in range(1, 40, 3)])
def test_a_real_sigint_during_fit_leaves_the_last_accepted_weights(tmp_path, delay):
    import os
    import signal
    import subprocess
    import sys
    import time

    script = os.path.join(os.path.dirname(__file__), "sigint_fit.py")
    child = subprocess.Popen(
        [sys.executable, script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "training"
    time.sleep(delay + 2.0)  # past the first traces, into the steps
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=120) == 0
    final = np.load(tmp_path / "final.npz")
    accepted = np.load(tmp_path / "accepted.npz")
    for key in final.files:
        np.testing.assert_array_equal(final[key], accepted[key])


def test_a_ctrl_c_that_python_dropped_is_raised_at_the_next_step():
    # Python drops a KeyboardInterrupt raised inside a finalizer (__del__); the SIGINT
    # handler that fit installs records it, and the next step raises it before it
    # moves the weights. Here the handler "runs" after the first batch.
    import signal

    from ctc_newton import _interrupts

    x, y = data(32)
    model = make_model()
    model.compile(optimizer=GaussNewton(), loss=CTCLoss())
    after_first = []

    def dropped_interrupt(batch, logs):
        after_first.extend(w.numpy().copy() for w in model.trainable_variables)
        try:
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        except KeyboardInterrupt:
            pass  # what a finalizer does with it

    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch == 0 and dropped_interrupt(batch, logs)
    )
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
    for w, expected in zip(model.trainable_variables, after_first):
        np.testing.assert_array_equal(w.numpy(), expected)
    # A later fit starts afresh: the interrupt was delivered once.
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert signal.getsignal(signal.SIGINT) is _interrupts._handler
