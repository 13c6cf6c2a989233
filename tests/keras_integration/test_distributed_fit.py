"""fit under MirroredStrategy with 2 logical CPU devices takes the global-batch step."""

import textwrap

import pytest

from tests.two_replicas import run_with_two_replicas

SCRIPT = """
    import warnings
    import ctc_newton
    from ctc_newton import CTCLoss
    from ctc_newton.optimizers import KFAC, LBFGS, GaussNewton, HessianFree

    from keras.src.backend.common.masking import get_keras_mask

    class ValidFrames(keras.metrics.Metric):  # frames the output mask keeps
        def __init__(self, name="valid_frames", **kwargs):
            super().__init__(name=name, **kwargs)
            self.frames = self.add_weight(name="frames", initializer="zeros")

        def update_state(self, y_true, y_pred, sample_weight=None):
            mask = get_keras_mask(y_pred)  # None in Keras' symbolic build
            mask = tf.ones(tf.shape(y_pred)[:2]) if mask is None else tf.cast(mask, "float32")
            self.frames.assign_add(tf.reduce_sum(mask))

        def result(self):
            return self.frames

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 8, 3))
    x[::2, 6:] = 0.0  # masked frames
    y = rng.integers(1, 4, size=(16, 2)).astype(np.int32)
    weights = np.linspace(0.5, 1.5, 16)

    def make():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((8, 3), dtype="float64"),
                                 keras.layers.Masking(0.0, dtype="float64"),
                                 keras.layers.Dense(6, activation="tanh", dtype="float64"),
                                 keras.layers.Dense(4, dtype="float64")])

    def fit(optimizer, distributed, metrics=False, steps_per_execution=1):
        with strategy.scope() if distributed else tf.init_scope():
            model = make()
            model.compile(optimizer=optimizer(), loss=CTCLoss(dtype="float64"),
                          metrics=[ctc_newton.LabelErrorRate(), ValidFrames()] if metrics
                          else None,
                          steps_per_execution=steps_per_execution)
        dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(8)
        history = model.fit(dataset, epochs=1, verbose=0, validation_data=(x[:8], y[:8]))
        return model, history.history

    # The recurrent case of the distributed oracle is tests/curvature/test_distributed.py.
    # Trust-region Newton-CG runs through the same distributed oracle and CG loop as
    # Gauss-Newton; it is left out for CI time.
    cases = {"HessianFree": (HessianFree, dict(metrics=True, steps_per_execution=2)),
             "GaussNewton": (GaussNewton, {}),
             "LBFGS": (lambda: LBFGS(max_iterations=3), {}),
             # Exact-in-class statistics: on this frame-wise model the replicas' random
             # signs cancel, so the factors (all-reduced) equal the single device's.
             "KFAC": (lambda: KFAC(exact_statistics=True, seed=3), {})}
    for optimizer, compile_args in [cases[name] for name in SELECTED]:
        replicated, logs = fit(optimizer, True, **compile_args)
        single, expected = fit(optimizer, False, **compile_args)
        name = type(single.optimizer).__name__
        assert replicated.distribute_strategy.num_replicas_in_sync == 2
        assert int(replicated.optimizer.iterations.numpy()) == \\
            int(single.optimizer.iterations.numpy()) > 0, name
        for a, b in zip(replicated.trainable_variables, single.trainable_variables):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-8, atol=1e-10,
                                       err_msg=name)
        assert set(logs) == set(expected), (name, logs, expected)
        for key in expected:
            np.testing.assert_allclose(logs[key], expected[key], rtol=1e-5, err_msg=key)
        if "valid_frames" in logs:  # 16 lines of 8 frames, 8 of them masked after 6
            assert logs["valid_frames"] == [16 * 8 - 8 * 2], logs["valid_frames"]
        print("FIT-OK", name, sorted(logs))
    np.testing.assert_allclose(replicated.predict(x, verbose=0), single.predict(x, verbose=0),
                               rtol=1e-8, atol=1e-10)
    if not SYNC_BN:
        raise SystemExit(0)

    # Synchronized BatchNorm couples the replicas' examples: no per-example gradients,
    # so HessianFree warns and runs unpreconditioned instead of deadlocking.
    with strategy.scope():
        model = keras.Sequential([keras.Input((8, 3), dtype="float64"),
                                  keras.layers.Dense(5, dtype="float64"),
                                  keras.layers.BatchNormalization(synchronized=True,
                                                                  dtype="float64"),
                                  keras.layers.Dense(4, dtype="float64")])
        model.compile(optimizer=HessianFree(), loss=CTCLoss(dtype="float64"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert any("synchronized" in str(w.message) for w in caught)
    assert history.history["loss"][1] < history.history["loss"][0]
    print("SYNC-BN-OK")
"""


def run(selected, sync_bn):
    return run_with_two_replicas(
        f"SELECTED = {selected!r}\nSYNC_BN = {sync_bn}\n" + textwrap.dedent(SCRIPT)
    )


def test_two_replica_fit_takes_the_global_batch_step():
    out = run(["HessianFree"], sync_bn=False)
    assert out.returncode == 0 and out.stdout.count("FIT-OK") == 1, out.stdout + out.stderr[-4000:]


@pytest.mark.slow  # three more optimizers and synchronized BatchNorm (about a minute in CI)
def test_two_replica_fit_of_gauss_newton_lbfgs_kfac_and_synchronized_batch_norm():
    out = run(["GaussNewton", "LBFGS", "KFAC"], sync_bn=True)
    assert out.stdout.count("FIT-OK") == 3, out.stdout + out.stderr[-4000:]
    assert "SYNC-BN-OK" in out.stdout, out.stdout + out.stderr[-4000:]
