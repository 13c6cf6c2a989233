"""The private Keras symbols ctc_newton relies on still behave as it uses them.

If one of these fails after a Keras upgrade, ctc_newton/_keras_adapter.py is the
one place to adapt.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctc_newton import _keras_adapter as adapter


def test_a_missing_symbol_fails_at_import_with_a_message_naming_it():
    with pytest.raises(ImportError, match="keras.src.losses.loss.no_such_symbol"):
        adapter._private("keras.src.losses.loss", "no_such_symbol")


def test_the_trainer_has_the_hooks_fit_calls():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert isinstance(model, adapter.TensorFlowTrainer)
    for name in ("train_step", "make_train_function"):
        assert callable(getattr(adapter.TensorFlowTrainer, name))
    values = {"loss": tf.constant(2.0)}
    reduced = adapter.reduce_per_replica(values, tf.distribute.get_strategy(), reduction="auto")
    assert float(reduced["loss"]) == 2.0


def test_unpack_x_y_sample_weight():
    x, y, w = tf.ones((2, 1)), tf.zeros((2,)), tf.constant([1.0, 2.0])
    assert adapter.unpack_x_y_sample_weight((x, y, w)) == (x, y, w)
    assert adapter.unpack_x_y_sample_weight((x, y)) == (x, y, None)


def test_masks_round_trip_on_a_tensor_and_come_from_masking_layers():
    t = tf.ones((2, 3))
    mask = tf.constant([[True, False, True]] * 2)
    adapter.set_keras_mask(t, mask)
    np.testing.assert_array_equal(adapter.get_keras_mask(t), mask)
    masked = keras.layers.Masking(0.0)(tf.constant([[[1.0], [0.0]]]))
    np.testing.assert_array_equal(adapter.get_keras_mask(masked), [[True, False]])


def test_loss_helpers_match_keras_public_behaviour():
    def squared(y_true, y_pred):
        return tf.reduce_mean((y_true - y_pred) ** 2, axis=-1)

    y_true, y_pred = tf.constant([[1.0], [2.0]]), tf.constant([[0.0], [0.0]])
    wrapped = adapter.LossFunctionWrapper(squared)
    assert isinstance(wrapped, keras.losses.Loss)
    np.testing.assert_allclose(
        wrapped(y_true, y_pred), keras.losses.MeanSquaredError()(y_true, y_pred)
    )
    assert float(adapter.scale_loss_for_distribution(tf.constant(3.0))) == 3.0
    mean = adapter.reduce_weighted_values(
        tf.constant([1.0, 3.0]),
        sample_weight=tf.constant([1.0, 0.0]),
        reduction="sum_over_batch_size",
    )
    assert float(mean) == pytest.approx(0.5)


def test_the_loss_tracker_and_nested_layers():
    inner = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model = keras.Sequential([keras.Input((2,)), inner, keras.layers.Dense(1)])
    model.compile(loss="mse")
    tracker = adapter.loss_tracker(model)
    tracker.update_state(4.0, sample_weight=2)
    assert float(tracker.result()) == 4.0
    assert any(
        isinstance(layer, keras.layers.Dense) and layer in inner.layers
        for layer in adapter.flatten_layers(model)
    )


def test_seed_generators_own_the_seed_states_among_the_non_trainable_variables():
    model = keras.Sequential(
        [
            keras.Input((5, 2)),
            keras.layers.GRU(3, dropout=0.5, return_sequences=True),
            keras.layers.Dropout(0.5),
            keras.layers.BatchNormalization(),
        ]
    )
    states = {id(g.state) for g in adapter.seed_generators(model)}
    assert len(states) == 2  # the GRU cell's and the Dropout layer's
    seeds = [v for v in model.non_trainable_variables if "seed_generator" in v.path]
    assert {id(v) for v in seeds} == states
    before = [np.array(v) for v in seeds]
    for generator in adapter.seed_generators(model):
        generator.next()
    assert all(np.any(np.array(v) != b) for v, b in zip(seeds, before))
