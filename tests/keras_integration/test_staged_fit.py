"""Staged: Adam then a second-order optimizer in one fit, resumable across save/load."""

import keras
import numpy as np
import pytest

import ctc_newton  # noqa: F401  (routes fit to the ctc_newton optimizers)
from ctc_newton.optimizers import LBFGS, GaussNewton, HessianFree, Staged


def regression():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, 2))
    return x, np.sin(2 * x[:, :1]) + x[:, 1:] ** 2


def make_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((2,), dtype="float64"),
            keras.layers.Dense(8, activation="tanh", dtype="float64"),
            keras.layers.Dense(1, dtype="float64"),
        ]
    )


def fit(model, epochs):
    x, y = regression()
    return model.fit(x, y, batch_size=len(x), epochs=epochs, shuffle=False, verbose=0)


def test_the_first_steps_are_adams_and_the_rest_the_second_optimizers():
    staged = make_model()
    staged.compile(optimizer=Staged(keras.optimizers.Adam(0.05), GaussNewton(), 3), loss="mse")
    history = fit(staged, 5).history

    # The same by hand: Keras' own Adam steps, then a model recompiled with GaussNewton.
    by_hand = make_model()
    by_hand.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    first = fit(by_hand, 3).history
    by_hand.compile(optimizer=GaussNewton(), loss="mse")
    second = fit(by_hand, 2).history

    for a, b in zip(staged.trainable_variables, by_hand.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(history["loss"], first["loss"] + second["loss"], rtol=1e-6)
    assert history["accepted"] == [1.0] * 5 and history["stage"] == [0.0] * 3 + [1.0] * 2
    assert len(history["damping"]) == 2  # logged by the Gauss-Newton steps
    assert staged.optimizer.stage == 1 and int(staged.optimizer.iterations.numpy()) == 5


@pytest.mark.parametrize("saved_after", [2, 4])  # in Adam's stage, and in L-BFGS's
def test_save_load_resumes_in_its_stage_with_the_same_next_steps(saved_after, tmp_path):
    model = make_model()
    model.compile(
        optimizer=Staged(keras.optimizers.Adam(0.05), LBFGS(max_iterations=3), 3), loss="mse"
    )
    fit(model, saved_after)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, Staged)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert int(loaded.optimizer.iterations.numpy()) == saved_after
    fit(loaded, 3)
    fit(model, 3)
    for a, b in zip(model.trainable_variables, loaded.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)


def test_a_non_finite_first_order_step_is_rejected_without_touching_the_weights():
    model = make_model()
    model.compile(optimizer=Staged(keras.optimizers.Adam(0.05), LBFGS(), 3), loss="mse")
    x, y = regression()
    y[0] = np.nan
    before = [w.numpy().copy() for w in model.trainable_variables]
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0).history
    assert history["accepted"] == [0.0]
    for w, b in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(w.numpy(), b)


@pytest.mark.parametrize(
    "args,error,message",
    [
        ((HessianFree(), LBFGS(), 3), TypeError, "`first` must be a Keras first-order"),
        ((keras.optimizers.Adam(), keras.optimizers.SGD(), 3), TypeError, "`second` must be"),
        ((keras.optimizers.Adam(), LBFGS(), -1), ValueError, "`switch_after` must be >= 0"),
        ((keras.optimizers.Adam(), LBFGS(), 2.5), TypeError, "`switch_after` must be an integer"),
    ],
)
def test_bad_arguments_name_the_argument(args, error, message):
    with pytest.raises(error, match=message):
        Staged(*args)
