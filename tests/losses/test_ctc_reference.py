"""ctc_loss against independent references: tf.nn.ctc_loss, brute force, Graves' example."""

import numpy as np
import pytest
import tensorflow as tf

from ctc_newton import ctc_loss
from tests.reference import brute_force


def loss_and_grad(labels, logits, label_length, logit_length, **kwargs):
    x = tf.convert_to_tensor(logits)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = ctc_loss(labels, x, label_length, logit_length, **kwargs)
    return loss.numpy(), tape.gradient(loss, x).numpy()


def tf_loss_and_grad(labels, logits, label_length, logit_length, blank_index):
    x = tf.convert_to_tensor(logits, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.nn.ctc_loss(
            labels, x, label_length, logit_length, logits_time_major=False, blank_index=blank_index
        )
    return loss.numpy(), tape.gradient(loss, x).numpy()


def random_batch(rng, batch, frames, classes, width, blank):
    non_blank = [k for k in range(classes) if k != blank]
    labels = rng.choice(non_blank, size=(batch, width)).astype(np.int32)
    labels[0, 1] = labels[0, 0]  # a repeated label forces a blank between them
    labels[1, :3] = labels[1, 0]
    label_length = rng.integers(1, width + 1, size=batch).astype(np.int32)
    label_length[0] = width
    logit_length = rng.integers(frames // 2, frames + 1, size=batch).astype(np.int32)
    logit_length[0] = frames
    # Every sequence must be feasible for the comparison (TF returns huge numbers otherwise).
    for b in range(batch):
        repeats = int(np.sum(labels[b, 1 : label_length[b]] == labels[b, : label_length[b] - 1]))
        logit_length[b] = max(logit_length[b], label_length[b] + repeats)
    logits = rng.standard_normal((batch, frames, classes)).astype(np.float32) * 2
    return labels, logits, label_length, logit_length


@pytest.mark.parametrize("blank", [0, 3, 6, -1])
def test_matches_tf_dense_labels(rng, blank):
    labels, logits, label_length, logit_length = random_batch(rng, 6, 20, 7, 6, blank % 7)
    loss, grad = loss_and_grad(labels, logits, label_length, logit_length, blank_index=blank)
    ref_loss, ref_grad = tf_loss_and_grad(labels, logits, label_length, logit_length, blank)
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-5)
    np.testing.assert_allclose(grad, ref_grad, atol=2e-5)


def test_matches_tf_sparse_labels(rng):
    labels, logits, label_length, logit_length = random_batch(rng, 5, 16, 5, 5, 0)
    mask = np.arange(labels.shape[1])[None, :] < label_length[:, None]
    indices = np.argwhere(mask)
    sparse = tf.SparseTensor(indices, labels[mask], dense_shape=labels.shape)
    loss, grad = loss_and_grad(sparse, logits, None, logit_length)
    ref_loss, ref_grad = tf_loss_and_grad(sparse, logits, None, logit_length, 0)
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-5)
    np.testing.assert_allclose(grad, ref_grad, atol=2e-5)
    dense_loss, dense_grad = loss_and_grad(labels, logits, label_length, logit_length)
    np.testing.assert_allclose(loss, dense_loss, rtol=1e-6)
    np.testing.assert_allclose(grad, dense_grad, atol=1e-7)


def test_time_major_equals_batch_major(rng):
    labels, logits, label_length, logit_length = random_batch(rng, 3, 10, 5, 3, 0)
    loss, grad = loss_and_grad(labels, logits, label_length, logit_length)
    loss_tm, grad_tm = loss_and_grad(
        labels, np.transpose(logits, [1, 0, 2]), label_length, logit_length, logits_time_major=True
    )
    np.testing.assert_allclose(loss, loss_tm, rtol=1e-6)
    np.testing.assert_allclose(grad, np.transpose(grad_tm, [1, 0, 2]), atol=1e-7)


@pytest.mark.parametrize(
    "label,blank,frames",
    [
        ([1, 2], 0, 4),
        ([1, 1], 0, 4),
        ([2, 2, 1], 0, 5),
        ([0, 1], 2, 4),
        ([1], 0, 5),
        ([], 0, 3),
        ([1, 0], 2, 3),
    ],
)
def test_loss_gradient_hessian_equal_brute_force(rng, label, blank, frames):
    classes = 3
    logits = rng.standard_normal((frames, classes))
    ref_loss, ref_grad, ref_hessian = brute_force(logits, label, blank)
    labels = np.array([label + [blank if blank else 1]], np.int32)  # padded past the length
    x = tf.constant(logits[None])
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            loss = ctc_loss(labels, x, [len(label)], [frames], blank_index=blank)
        grad = inner.gradient(loss, x)
    hessian = outer.jacobian(grad, x).numpy().reshape(frames * classes, frames * classes)
    np.testing.assert_allclose(loss.numpy()[0], ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad.numpy()[0], ref_grad, atol=1e-12)
    np.testing.assert_allclose(hessian, ref_hessian, atol=1e-12)


def test_graves_reference_example():
    """TF's ctc_loss_op_test: T=5, K=6, blank last, inputs are log-probabilities."""
    seq_0 = np.array(
        [
            [0.633766, 0.221185, 0.0917319, 0.0129757, 0.0142857, 0.0260553],
            [0.111121, 0.588392, 0.278779, 0.0055756, 0.00569609, 0.010436],
            [0.0357786, 0.633813, 0.321418, 0.00249248, 0.00272882, 0.0037688],
            [0.0663296, 0.643849, 0.280111, 0.00283995, 0.0035545, 0.00331533],
            [0.458235, 0.396634, 0.123377, 0.00648837, 0.00903441, 0.00623107],
        ]
    )
    seq_1 = np.array(
        [
            [0.30176, 0.28562, 0.0831517, 0.0862751, 0.0816851, 0.161508],
            [0.24082, 0.397533, 0.0557226, 0.0546814, 0.0557528, 0.19549],
            [0.230246, 0.450868, 0.0389607, 0.038309, 0.0391602, 0.202456],
            [0.280884, 0.429522, 0.0326593, 0.0339046, 0.0326856, 0.190345],
            [0.423286, 0.315517, 0.0338439, 0.0393744, 0.0339315, 0.154046],
        ]
    )
    logits = np.log(np.stack([seq_0, seq_1]))
    labels = np.array([[0, 1, 2, 1, 0], [0, 1, 1, 0, 0]], np.int32)
    loss = ctc_loss(labels, logits, [5, 4], [5, 5], blank_index=-1)
    np.testing.assert_allclose(loss.numpy(), [3.34211, 5.42262], rtol=1e-5)
