"""Property test: `ctc_loss` equals `tf.nn.ctc_loss` on random valid inputs."""

import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from ctc_newton import ctc_loss

B, T, K, WIDTH = 3, 12, 6, 5  # fixed shapes (values vary): one compilation


@st.composite
def valid_batches(draw):
    blank = draw(st.integers(0, K - 1))
    labels_alphabet = [k for k in range(K) if k != blank]
    # A small alphabet makes adjacent repeats (which need a blank between them) common.
    alphabet = draw(st.lists(st.sampled_from(labels_alphabet), min_size=1, max_size=3, unique=True))
    labels = np.full((B, WIDTH), blank, np.int32)  # padding: any value, here the blank
    label_length = np.zeros(B, np.int32)
    logit_length = np.zeros(B, np.int32)
    for b in range(B):
        row = draw(st.lists(st.sampled_from(alphabet), min_size=0, max_size=WIDTH))
        labels[b, : len(row)] = row
        label_length[b] = len(row)
        repeats = sum(x == y for x, y in zip(row, row[1:]))
        logit_length[b] = draw(st.integers(len(row) + repeats, T))  # feasible
    seed = draw(st.integers(0, 2**16))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0]))
    # float32: tf.nn.ctc_loss's dense path fails on float64 input.
    logits = (scale * np.random.default_rng(seed).standard_normal((B, T, K))).astype(np.float32)
    return labels, logits, label_length, logit_length, blank


@settings(max_examples=30, deadline=None)
@given(valid_batches())
def test_ctc_loss_equals_tf_nn_ctc_loss(batch):
    labels, logits, label_length, logit_length, blank = batch
    x = tf.constant(logits)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = ctc_loss(labels, x, label_length, logit_length, blank_index=blank)
        theirs = tf.nn.ctc_loss(
            labels, x, label_length, logit_length, logits_time_major=False, blank_index=blank
        )
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        tape.gradient(ours, x).numpy(), tape.gradient(theirs, x).numpy(), atol=2e-5
    )
