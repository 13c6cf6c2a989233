"""CTCLoss in model.compile: Keras conventions, masks, explicit lengths, config."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctc_newton import CTCLoss, ctc_loss


def data(rng, batch=8, frames=12, features=3, width=4, classes=5):
    x = rng.standard_normal((batch, frames, features)).astype(np.float32)
    lengths = rng.integers(1, width + 1, size=batch)
    labels = np.zeros((batch, width), np.int32)  # Keras convention: padded with 0 = blank
    for b, n in enumerate(lengths):
        labels[b, :n] = rng.integers(1, classes, size=n)
    return x, labels, lengths


def test_keras_convention_equals_functional_loss(rng):
    _, labels, lengths = data(rng)
    logits = rng.standard_normal((8, 12, 5)).astype(np.float32)
    loss = CTCLoss()(labels, logits)
    expected = ctc_loss(labels, logits, lengths, np.full(8, 12)).numpy().mean()
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(
        CTCLoss(reduction=None)(labels, logits).numpy(),
        ctc_loss(labels, logits, lengths, np.full(8, 12)).numpy(),
        rtol=1e-6,
    )
    # Keras' own CTC loss agrees on its convention.
    np.testing.assert_allclose(loss.numpy(), keras.losses.CTC()(labels, logits).numpy(), rtol=1e-4)


def test_sample_weight_and_explicit_lengths(rng):
    _, labels, lengths = data(rng)
    logits = rng.standard_normal((8, 12, 5)).astype(np.float32)
    frames = rng.integers(9, 13, size=8).astype(np.int32)
    weights = rng.random(8).astype(np.float32)
    loss = CTCLoss(reduction="sum")(
        {"labels": labels, "logit_length": frames}, logits, sample_weight=weights
    )
    expected = np.sum(weights * ctc_loss(labels, logits, lengths, frames).numpy())
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)


def test_padding_in_the_middle_is_rejected():
    with pytest.raises(tf.errors.InvalidArgumentError, match="padding before a label"):
        CTCLoss()(np.array([[1, 0, 2]]), np.zeros((1, 6, 4), np.float32))


def masked_model(classes=5):
    inputs = keras.Input((None, 3))
    x = keras.layers.Masking(0.0)(inputs)
    x = keras.layers.GRU(8, return_sequences=True)(x)
    return keras.Model(inputs, keras.layers.Dense(classes)(x))


def test_fit_uses_mask_for_logit_lengths(rng):
    keras.utils.set_random_seed(0)
    x, labels, lengths = data(rng)
    frames = np.array([12, 10, 8, 12, 9, 12, 11, 7])
    x[np.arange(12)[None, :] >= frames[:, None]] = 0.0  # padded frames, masked out
    model = masked_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=CTCLoss())
    expected = ctc_loss(labels, model(x), lengths, frames).numpy().mean()
    np.testing.assert_allclose(model.evaluate(x, labels, verbose=0), expected, rtol=1e-5)
    history = model.fit(x, labels, epochs=15, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]


def test_float64_model(rng):
    x, labels, lengths = data(rng)
    model = keras.Sequential(
        [keras.Input((12, 3), dtype="float64"), keras.layers.Dense(5, dtype="float64")]
    )
    model.compile(optimizer="sgd", loss=CTCLoss())
    logits = model(x.astype(np.float64))
    loss = CTCLoss()(labels, logits)
    assert loss.dtype == tf.float64
    np.testing.assert_allclose(
        model.evaluate(x.astype(np.float64), labels, verbose=0), loss.numpy(), rtol=1e-6
    )


def test_config_round_trip(tmp_path, rng):
    loss = CTCLoss(
        blank_index=-1, padding_value=-1, zero_infinity=True, reduction="sum", name="my_ctc"
    )
    restored = CTCLoss.from_config(loss.get_config())
    assert restored.get_config() == loss.get_config()
    assert keras.losses.deserialize(keras.losses.serialize(loss)).get_config() == loss.get_config()
    model = keras.Sequential([keras.Input((12, 3)), keras.layers.Dense(5)])
    model.compile(optimizer="sgd", loss=loss)
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    assert reloaded.loss.get_config() == loss.get_config()
