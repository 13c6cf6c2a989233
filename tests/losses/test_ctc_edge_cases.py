"""Infeasible alignments, empty labels, long sequences, dtypes, graph behaviour."""

import numpy as np
import pytest
import tensorflow as tf

from ctc_newton import ctc_loss


def loss_and_grad(labels, logits, label_length, logit_length, **kwargs):
    x = tf.convert_to_tensor(logits)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = ctc_loss(labels, x, label_length, logit_length, **kwargs)
    return loss.numpy(), tape.gradient(loss, x).numpy()


def test_infeasible_alignment_is_inf_with_zero_gradient(rng):
    logits = rng.standard_normal((3, 4, 5))
    labels = np.array([[1, 1, 2], [1, 2, 3], [1, 2, 0]], np.int32)
    # [1, 1, 2] needs 4 frames (a blank between the repeats): feasible in 4, not in 3.
    loss, grad = loss_and_grad(labels, logits, [3, 3, 2], [3, 2, 4])
    assert np.isposinf(loss[0]) and np.isposinf(loss[1]) and np.isfinite(loss[2])
    assert np.all(grad[:2] == 0) and np.any(grad[2] != 0)
    loss, _ = loss_and_grad(labels, logits, [3, 3, 2], [4, 3, 4])
    assert np.all(np.isfinite(loss))


def test_zero_infinity_gives_zero_loss_and_gradient(rng):
    logits = rng.standard_normal((2, 3, 5))
    labels = np.array([[1, 2, 3, 4], [1, 0, 0, 0]], np.int32)
    loss, grad = loss_and_grad(labels, logits, [4, 1], [3, 3], zero_infinity=True)
    assert loss[0] == 0 and np.all(grad[0] == 0)
    assert loss[1] > 0 and np.any(grad[1] != 0)


def test_empty_labels_are_exact(rng):
    logits = rng.standard_normal((2, 6, 4))
    loss, grad = loss_and_grad(np.zeros((2, 0), np.int32), logits, [0, 0], [6, 4])
    log_probs = tf.nn.log_softmax(logits).numpy()
    np.testing.assert_allclose(
        loss, [-log_probs[0, :, 0].sum(), -log_probs[1, :4, 0].sum()], rtol=1e-12
    )
    expected = tf.nn.softmax(logits).numpy()
    expected[:, :, 0] -= 1
    expected[1, 4:] = 0
    np.testing.assert_allclose(grad, expected, atol=1e-12)


def test_zero_frames(rng):
    logits = rng.standard_normal((2, 3, 4))
    loss, grad = loss_and_grad(np.array([[0], [1]], np.int32), logits, [0, 1], [0, 0])
    assert loss[0] == 0 and np.isposinf(loss[1]) and np.all(grad == 0)


def test_minus_inf_logit_stays_finite(rng):
    logits = rng.standard_normal((1, 6, 4))
    logits[0, 2, 3] = -np.inf
    loss, grad = loss_and_grad(np.array([[1, 2]], np.int32), logits, [2], [6])
    assert np.isfinite(loss).all() and np.isfinite(grad).all()


def test_long_sequence_float32_matches_float64(rng):
    frames, classes = 5000, 12
    logits = rng.standard_normal((2, frames, classes)) * 3
    labels = rng.integers(1, classes, size=(2, 300)).astype(np.int32)
    args = (labels, None, [300, 200], [frames, 4000])
    loss64, grad64 = loss_and_grad(args[0], logits, *args[2:])
    loss32, grad32 = loss_and_grad(args[0], logits.astype(np.float32), *args[2:])
    assert np.all(np.isfinite(loss32)) and loss32.dtype == np.float32
    np.testing.assert_allclose(loss32, loss64, rtol=1e-5)
    # float32 log-space rounding accumulates over 5000 frames; TF's own float32 kernel is
    # off by ~4e-2 on this case.
    assert np.abs(grad32 - grad64).max() < 1e-3


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_half_precision_computed_in_float32(rng, dtype):
    logits = rng.standard_normal((2, 8, 5)).astype(np.float32)
    labels = np.array([[1, 2], [3, 0]], np.int32)
    half = tf.cast(logits, dtype)
    x = tf.Variable(half)
    with tf.GradientTape() as tape:
        loss = ctc_loss(labels, x, [2, 1], [8, 6])
    grad = tape.gradient(loss, x)
    assert loss.dtype == dtype and grad.dtype == dtype
    ref = ctc_loss(labels, tf.cast(half, tf.float32), [2, 1], [8, 6])
    np.testing.assert_allclose(tf.cast(loss, tf.float32).numpy(), ref.numpy(), rtol=1e-2)


def test_tf_function_does_not_retrace_for_new_lengths(rng):
    traces = []

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, 5], tf.float32),
            tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None], tf.int32),
        ]
    )
    def fn(logits, labels, label_length, logit_length):
        traces.append(1)
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = tf.reduce_sum(ctc_loss(labels, logits, label_length, logit_length))
        return loss, tape.gradient(loss, logits)

    for batch, frames, width in [(2, 6, 2), (3, 9, 4), (1, 4, 1)]:
        logits = rng.standard_normal((batch, frames, 5)).astype(np.float32)
        labels = rng.integers(1, 5, size=(batch, width)).astype(np.int32)
        lengths = np.full(batch, width, np.int32)
        frames_each = np.full(batch, frames, np.int32) - (np.arange(batch) % 2)
        loss, _ = fn(logits, labels, lengths, frames_each)
        eager = ctc_loss(labels, logits, lengths, frames_each)
        np.testing.assert_allclose(loss.numpy(), eager.numpy().sum(), rtol=1e-5)
    assert len(traces) == 1


def test_same_results_with_and_without_xla(rng):
    from ctc_newton.losses import set_xla, xla_enabled

    logits = rng.standard_normal((3, 9, 5))
    labels = np.array([[1, 2, 2], [3, 0, 0], [4, 1, 0]], np.int32)
    v = tf.constant(rng.standard_normal(logits.shape))

    def products():
        x = tf.constant(logits)
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                loss = ctc_loss(labels, x, [3, 1, 2], [9, 7, 5])
            grad = inner.gradient(loss, x)
        return loss, grad, outer.gradient(grad, x, output_gradients=v)

    assert xla_enabled()
    with_xla = products()
    set_xla(False)
    try:
        without_xla = products()
    finally:
        set_xla(True)
    for a, b in zip(with_xla, without_xla):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12)
