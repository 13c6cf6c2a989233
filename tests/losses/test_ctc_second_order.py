"""Exact second derivatives: HVPs against finite differences, symmetry, models."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctc_newton import ctc_gauss_newton_vector_product, ctc_hessian_vector_product, ctc_loss

FRAMES, CLASSES = 14, 6
LABELS = np.array([[1, 2, 2, 3], [4, 4, 0, 0], [5, 1, 3, 0]], np.int32)
LABEL_LENGTH = np.array([4, 2, 3], np.int32)
LOGIT_LENGTH = np.array([14, 9, 11], np.int32)


def total_loss(x):
    return tf.reduce_sum(ctc_loss(LABELS, x, LABEL_LENGTH, LOGIT_LENGTH))


def gradient(x):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = total_loss(x)
    return tape.gradient(loss, x)


def tape_hvp(x, v):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as outer:
        outer.watch(x)
        g = gradient(x)
    return outer.gradient(g, x, output_gradients=tf.convert_to_tensor(v)).numpy()


@pytest.fixture
def point(rng):
    x = rng.standard_normal((3, FRAMES, CLASSES))
    return x, rng.standard_normal(x.shape), rng.standard_normal(x.shape)


def frame_mask():
    return (np.arange(FRAMES)[None, :] < LOGIT_LENGTH[:, None])[:, :, None]


def test_hvp_matches_central_differences(point):
    x, v, _ = point
    eps = 1e-4
    fd = (gradient(x + eps * v).numpy() - gradient(x - eps * v).numpy()) / (2 * eps)
    hv = tape_hvp(x, v)
    assert np.linalg.norm(hv - fd) <= 1e-7 * np.linalg.norm(fd)


def test_hvp_function_equals_nested_tapes(point):
    x, v, _ = point
    direct = ctc_hessian_vector_product(LABELS, x, LABEL_LENGTH, LOGIT_LENGTH, v).numpy()
    np.testing.assert_allclose(direct, tape_hvp(x, v), atol=1e-13)


def test_hessian_is_symmetric_and_indefinite(point):
    x, u, v = point
    hv, hu = tape_hvp(x, v), tape_hvp(x, u)
    np.testing.assert_allclose(np.sum(u * hv), np.sum(v * hu), rtol=1e-11)
    # One sequence, explicitly: the exact CTC Hessian has negative eigenvalues.
    xs = tf.constant(x[:1])
    with tf.GradientTape() as outer:
        outer.watch(xs)
        with tf.GradientTape() as inner:
            inner.watch(xs)
            loss = ctc_loss(LABELS[:1], xs, LABEL_LENGTH[:1], LOGIT_LENGTH[:1])
        g = inner.gradient(loss, xs)
    h = outer.jacobian(g, xs).numpy().reshape(FRAMES * CLASSES, -1)
    eigenvalues = np.linalg.eigvalsh(h)
    assert eigenvalues.min() < -1e-3 and eigenvalues.max() > 1e-3
    # The softmax shift invariance gives one zero eigenvalue per frame.
    assert np.sum(np.abs(eigenvalues) < 1e-10) >= FRAMES


def test_hessian_annihilates_per_frame_constants(point):
    x, _, _ = point
    constant = np.repeat(np.random.default_rng(0).standard_normal((3, FRAMES, 1)), CLASSES, 2)
    np.testing.assert_allclose(tape_hvp(x, constant), 0.0, atol=1e-12)


def test_padded_frames_have_zero_gradient_and_curvature_even_with_nan(point):
    x, v, _ = point
    poisoned = np.where(frame_mask(), x, np.nan)
    poisoned[1, -1, 0] = np.inf
    g = gradient(poisoned).numpy()
    hv = tape_hvp(poisoned, v)
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(hv))
    assert np.all(g[~np.broadcast_to(frame_mask(), g.shape)] == 0)
    assert np.all(hv[~np.broadcast_to(frame_mask(), hv.shape)] == 0)
    np.testing.assert_allclose(g, gradient(x).numpy(), atol=1e-14)
    np.testing.assert_allclose(hv, tape_hvp(x, v), atol=1e-13)


def test_gauss_newton_is_psd_and_the_framewise_softmax_hessian(point):
    x, v, _ = point
    gv = ctc_gauss_newton_vector_product(x, LOGIT_LENGTH, v).numpy()
    assert np.sum(v * gv) >= 0
    for seed in range(5):
        w = np.random.default_rng(seed).standard_normal(x.shape)
        assert np.sum(w * ctc_gauss_newton_vector_product(x, LOGIT_LENGTH, w).numpy()) >= 0
    y = tf.nn.softmax(x).numpy()
    expected = np.zeros_like(v)
    for b in range(3):
        for t in range(FRAMES):
            block = np.diag(y[b, t]) - np.outer(y[b, t], y[b, t])
            expected[b, t] = block @ v[b, t] if t < LOGIT_LENGTH[b] else 0.0
    np.testing.assert_allclose(gv, expected, atol=1e-14)
    # It is the Hessian of frame-wise cross-entropy with the occupancies held fixed.
    occupancy = tf.nn.softmax(x).numpy() - gradient(x).numpy()
    xt = tf.constant(x)
    with tf.GradientTape() as outer:
        outer.watch(xt)
        with tf.GradientTape() as inner:
            inner.watch(xt)
            ce = tf.reduce_sum(
                tf.nn.softmax_cross_entropy_with_logits(occupancy, xt) * frame_mask()[:, :, 0]
            )
        g = inner.gradient(ce, xt)
    np.testing.assert_allclose(
        outer.gradient(g, xt, output_gradients=tf.constant(v)), gv, atol=1e-13
    )


def test_third_derivative_raises_instead_of_returning_a_wrong_number(point):
    x, v, _ = point
    x = tf.constant(x)
    with tf.GradientTape() as third:
        third.watch(x)
        with tf.GradientTape() as outer:
            outer.watch(x)
            g = gradient(x)
        hv = outer.gradient(g, x, output_gradients=tf.constant(v))
    with pytest.raises(LookupError, match="second order"):
        third.gradient(hv, x)


def model_hvp_check(model, inputs, rng, tolerance=1e-6):
    labels = np.array([[1, 2], [3, 3]], np.int32)
    frames = model(inputs).shape[1]

    def loss_fn():
        logits = model(inputs)
        return tf.reduce_mean(ctc_loss(labels, logits, [2, 2], [frames, frames - 1]))

    weights = model.trainable_variables
    vector = [tf.constant(rng.standard_normal(w.shape)) for w in weights]

    def grads():
        with tf.GradientTape() as tape:
            loss = loss_fn()
        return tape.gradient(loss, weights)

    with tf.GradientTape() as outer:
        g = grads()
    hv = outer.gradient(g, weights, output_gradients=vector)
    eps = 1e-5
    original = [w.numpy() for w in weights]
    for w, o, d in zip(weights, original, vector):
        w.assign(o + eps * d.numpy())
    plus = grads()
    for w, o, d in zip(weights, original, vector):
        w.assign(o - eps * d.numpy())
    minus = grads()
    for w, o in zip(weights, original):
        w.assign(o)
    fd = np.concatenate([((p - m) / (2 * eps)).numpy().ravel() for p, m in zip(plus, minus)])
    exact = np.concatenate([h.numpy().ravel() for h in hv])
    assert np.linalg.norm(exact - fd) <= tolerance * np.linalg.norm(fd)


@pytest.mark.parametrize("layer", ["dense", "conv1d", "lstm", "gru"])
def test_hvp_through_keras_model_matches_finite_differences(rng, layer):
    keras.utils.set_random_seed(0)
    hidden = {
        "dense": lambda: keras.layers.Dense(8, activation="tanh", dtype="float64"),
        "conv1d": lambda: keras.layers.Conv1D(
            6, 3, padding="same", activation="tanh", dtype="float64"
        ),
        "lstm": lambda: keras.layers.LSTM(
            5, return_sequences=True, use_cudnn=False, dtype="float64"
        ),
        "gru": lambda: keras.layers.GRU(5, return_sequences=True, use_cudnn=False, dtype="float64"),
    }[layer]
    model = keras.Sequential(
        [keras.Input((7, 3), dtype="float64"), hidden(), keras.layers.Dense(5, dtype="float64")]
    )
    inputs = tf.constant(rng.standard_normal((2, 7, 3)))
    model_hvp_check(model, inputs, rng)


def test_repeated_products_at_one_point_reuse_stored_weights(point):
    from ctc_newton.losses._lattice import build_lattice
    from ctc_newton.losses.ctc import CTCPoint

    x, v, u = point
    lattice = build_lattice(
        tf.constant(LABELS), tf.constant(LABEL_LENGTH), tf.constant(LOGIT_LENGTH), 0, tf.float64
    )
    at = CTCPoint(tf.constant(x), lattice, tf.constant(LOGIT_LENGTH))
    first = at.hessian_vector_product(tf.constant(v)).numpy()  # fused weights
    again = at.hessian_vector_product(tf.constant(v)).numpy()  # stored weights
    other = at.hessian_vector_product(tf.constant(u)).numpy()
    assert at._weights is not None
    np.testing.assert_allclose(again, first, atol=1e-13)
    np.testing.assert_allclose(other, tape_hvp(x, u), atol=1e-13)
