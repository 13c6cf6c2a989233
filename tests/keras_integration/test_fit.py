"""model.fit with ctc_newton optimizers: the step equals the oracle step; Keras intact."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.backend.common.masking import get_keras_mask

import ctc_newton
from ctc_newton import CTCLoss, CurvatureOracle
from ctc_newton.keras_integration import install, is_installed, uninstall
from ctc_newton.optimizers import KFAC, LBFGS, GaussNewton, HessianFree, TrustRegionNewtonCG


def data(n=32, frames=8):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, frames, 3)).astype(np.float32)
    y = rng.integers(1, 4, size=(n, 2)).astype(np.int32)
    return x, y


def make_model(kind="dense"):
    keras.utils.set_random_seed(0)
    hidden = (
        keras.layers.LSTM(6, return_sequences=True, use_cudnn=False)
        if kind == "lstm"
        else keras.layers.Dense(6, activation="tanh")
    )
    return keras.Sequential([keras.Input((8, 3)), hidden, keras.layers.Dense(4)])


@pytest.mark.parametrize("kind", ["dense", "lstm"])
@pytest.mark.parametrize("make", [HessianFree, GaussNewton, TrustRegionNewtonCG])
def test_first_two_fit_steps_equal_oracle_steps(kind, make):
    x, y = data()
    model = make_model(kind)
    model.compile(optimizer=make(), loss=CTCLoss())
    model.fit(x, y, batch_size=len(x), epochs=2, shuffle=False, verbose=0)
    reference = make_model(kind)
    optimizer = make()
    for _ in range(2):
        optimizer.step(CurvatureOracle.from_keras(reference, CTCLoss(), x, y))
    for a, b in zip(model.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert int(model.optimizer.iterations.numpy()) == 2


@pytest.mark.parametrize(
    "make", [HessianFree, GaussNewton, TrustRegionNewtonCG, lambda: LBFGS(max_iterations=4)]
)
def test_fit_reduces_the_ctc_loss_and_logs_curvature_statistics(make):
    x, y = data(64)
    model = make_model("lstm")
    model.compile(optimizer=make(), loss=CTCLoss(), metrics=[ctc_newton.LabelErrorRate()])
    dataset = tf.data.Dataset.from_tensor_slices((x, y, np.ones(64, np.float32))).batch(16)
    history = model.fit(dataset, epochs=3, verbose=0, validation_data=(x[:16], y[:16]))
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    assert "val_loss" in history.history and "label_error_rate" in history.history
    assert {"cg_iterations", "damping"} & set(history.history) or {
        "lbfgs_iterations",
        "radius",
    } & set(history.history)
    model.evaluate(x, y, verbose=0)
    assert model.predict(x[:4], verbose=0).shape == (4, 8, 4)


def test_masking_sample_weights_and_steps_per_execution():
    x, y = data(32)
    x[::2, 6:] = 0.0
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 3)),
            keras.layers.Masking(0.0),
            keras.layers.GRU(5, return_sequences=True),
            keras.layers.Dense(4),
        ]
    )
    model.compile(optimizer=GaussNewton(), loss=CTCLoss(), steps_per_execution=2)
    weights = np.linspace(0.5, 1.5, 32).astype(np.float32)
    history = model.fit(x, y, sample_weight=weights, batch_size=8, epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert int(model.optimizer.iterations.numpy()) == 8


def test_adam_is_bit_identical_with_and_without_the_hook():
    x, y = data()
    results = []
    for hooked in (True, False):
        if not hooked:
            uninstall()
        try:
            model = make_model("lstm")
            model.compile(optimizer=keras.optimizers.Adam(0.01), loss=CTCLoss())
            model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
            results.append([w.numpy() for w in model.trainable_variables])
        finally:
            install()
    assert is_installed()
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_save_load_and_checkpoint_resume_with_identical_next_steps(tmp_path):
    x, y = data()
    model = make_model()
    model.compile(optimizer=HessianFree(damping=0.5), loss=CTCLoss())
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, HessianFree)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    np.testing.assert_allclose(loaded.optimizer.damping.numpy(), model.optimizer.damping.numpy())
    np.testing.assert_allclose(
        loaded.optimizer.previous_solution.numpy(), model.optimizer.previous_solution.numpy()
    )
    checkpoint_model = make_model()
    checkpoint_model.compile(optimizer=HessianFree(damping=0.5), loss=CTCLoss())
    checkpoint_model.optimizer.build(checkpoint_model.trainable_variables)
    path = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=checkpoint_model, optimizer=checkpoint_model.optimizer).restore(path)
    for resumed in (loaded, checkpoint_model):
        resumed.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    for resumed in (loaded, checkpoint_model):
        for a, b in zip(model.trainable_variables, resumed.trainable_variables):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_a_custom_train_step_gets_a_clear_message():
    class Custom(keras.Model):
        def train_step(self, data):
            x, y = data
            with tf.GradientTape() as tape:
                loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
            return {"loss": loss}

    x, y = data()
    inputs = keras.Input((8, 3))
    model = Custom(inputs, keras.layers.Dense(4)(inputs))
    model.compile(optimizer=HessianFree(), loss=CTCLoss())
    with pytest.raises(RuntimeError, match="overrides train_step"):
        model.fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize("optimizer_class", [GaussNewton, KFAC])
def test_mixed_precision_overflow_skips_the_step_and_lowers_the_scale(optimizer_class):
    x, y = data(16)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((8, 3)), keras.layers.Dense(6), keras.layers.Dense(4)]
        )
        model.compile(optimizer=optimizer_class(), loss=CTCLoss())
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        assert history.history["accepted"] == [1.0, 1.0]
        if optimizer_class is KFAC:  # the factors stay float32
            state = model.optimizer.inner_optimizer._kronecker
            assert {v.dtype for group in state.averages for v in group} == {"float32"}
        model.layers[0].kernel.assign(model.layers[0].kernel * 1e5)  # float16 overflows
        before = [w.numpy().copy() for w in model.trainable_variables]
        damping = float(model.optimizer.inner_optimizer.damping.numpy())
        scale = float(model.optimizer.dynamic_scale.numpy())
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert history.history["accepted"] == [0.0]
    for old, new in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(old, new.numpy())
    assert float(model.optimizer.inner_optimizer.damping.numpy()) > damping
    assert float(model.optimizer.dynamic_scale.numpy()) == scale / 2


class SubclassedRecognizer(keras.Model):
    """A subclassed model that keeps Keras' train_step."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(6, activation="tanh")
        self.out = keras.layers.Dense(4)

    def call(self, inputs, training=False):
        return self.out(self.hidden(inputs))


def functional_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 3))
    return keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Dense(6, "tanh")(inputs)))


def subclassed_model():
    keras.utils.set_random_seed(0)
    model = SubclassedRecognizer()
    model(np.zeros((1, 8, 3), np.float32))
    return model


@pytest.mark.parametrize("build", [functional_model, subclassed_model])
def test_functional_and_subclassed_models_take_the_oracle_step(build):
    x, y = data(16)
    model = build()
    model.compile(optimizer=GaussNewton(), loss=CTCLoss())
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    reference = build()
    GaussNewton().step(CurvatureOracle.from_keras(reference, CTCLoss(), x, y))
    for a, b in zip(model.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_callbacks_and_the_progress_bar_see_the_curvature_statistics(capsys):
    x, y = data(16)
    model = functional_model()
    model.compile(optimizer=HessianFree(), loss=CTCLoss())
    seen = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(dict(logs))
    )
    model.fit(x, y, batch_size=8, epochs=1, verbose=1, callbacks=[callback])
    assert len(seen) == 2
    assert all({"loss", "damping", "cg_iterations", "rho"} <= set(logs) for logs in seen)
    assert "cg_iterations" in capsys.readouterr().out


class ValidFrames(keras.metrics.Metric):
    """Counts the frames the output mask keeps (all frames without a mask)."""

    def __init__(self, name="valid_frames", **kwargs):
        super().__init__(name=name, **kwargs)
        self.frames = self.add_weight(name="frames", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        mask = get_keras_mask(y_pred)
        if mask is None:
            mask = tf.ones(tf.shape(y_pred)[:2], tf.bool)
        self.frames.assign_add(tf.reduce_sum(tf.cast(mask, "float32")))

    def result(self):
        return self.frames


def test_metrics_see_the_output_mask():
    x, y = data(16)
    x[::2, 5:] = 0.0  # half the lines are 5 frames long
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8, 3)), keras.layers.Masking(0.0), keras.layers.Dense(4)]
    )
    model.compile(optimizer=GaussNewton(), loss=CTCLoss(), metrics=[ValidFrames()])
    history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert history.history["valid_frames"] == [16 * 8 - 8 * 3]


def test_fit_moves_batchnorm_statistics_and_dropout_seeds_once_per_step():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 6, 3)).astype("float32")
    y = rng.integers(1, 4, size=(8, 2)).astype("int32")
    keras.utils.set_random_seed(0)
    seeds_only = keras.Sequential(
        [keras.Input((6, 3)), keras.layers.Dropout(0.2), keras.layers.Dense(5)]
    )
    with_statistics = keras.Sequential(
        [
            keras.Input((6, 3)),
            keras.layers.Dropout(0.2),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(5),
        ]
    )
    for model in (seeds_only, with_statistics):
        model.compile(optimizer=GaussNewton(max_cg_iterations=2), loss=CTCLoss())
        before = [np.array(v) for v in model.non_trainable_variables]
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        for variable, old in zip(model.non_trainable_variables, before):
            assert np.any(np.array(variable) != old), variable.path
    seed = next(v for v in seeds_only.non_trainable_variables if "seed" in v.path)
    assert np.array(seed)[1] == 2  # advanced once per step, not by the oracle's passes
