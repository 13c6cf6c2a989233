"""Invalid or non-finite values never come back as a finite (or +inf) loss.

Under XLA run-time asserts are dropped: an invalid sequence must give NaN loss and
gradient; with static values the error is raised at trace time. NaN on a valid
frame gives NaN, not the +inf of an infeasible alignment, with or without
``zero_infinity``. Edge inputs: T = 0, sparse labels with gaps, int64 values beyond
int32, numpy integer blanks.
"""

import numpy as np
import pytest
import tensorflow as tf

from ctc_newton import CTCLoss, ctc_loss

K = 5
LOGITS = np.random.default_rng(0).standard_normal((3, 8, K)).astype(np.float32)
LABELS = np.array([[1, 2, 3], [4, 4, 0], [2, 0, 0]], np.int32)
LABEL_LENGTH = np.array([3, 2, 1], np.int32)
LOGIT_LENGTH = np.array([8, 7, 6], np.int32)

# (name, labels, label_length, logit_length) with row 1 invalid.
BAD_ROW_CASES = [
    ("id >= K", [[1, 2, 3], [4, 7, 0], [2, 0, 0]], [3, 2, 1], [8, 7, 6]),
    ("negative id", [[1, 2, 3], [4, -2, 0], [2, 0, 0]], [3, 2, 1], [8, 7, 6]),
    ("blank id", [[1, 2, 3], [4, 0, 0], [2, 0, 0]], [3, 2, 1], [8, 7, 6]),
    ("logit_length > T", [[1, 2, 3], [4, 4, 0], [2, 0, 0]], [3, 2, 1], [8, 9, 6]),
    ("negative logit_length", [[1, 2, 3], [4, 4, 0], [2, 0, 0]], [3, 2, 1], [8, -1, 6]),
    ("label_length > width", [[1, 2, 3], [4, 4, 0], [2, 0, 0]], [3, 4, 1], [8, 7, 6]),
    ("negative label_length", [[1, 2, 3], [4, 4, 0], [2, 0, 0]], [3, -1, 1], [8, 7, 6]),
]


def loss_and_gradient(fn, *args):
    x = tf.constant(LOGITS)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = fn(x, *args)
    return loss.numpy(), tape.gradient(loss, x).numpy()


@pytest.mark.parametrize(
    "name,labels,label_length,logit_length", BAD_ROW_CASES, ids=[c[0] for c in BAD_ROW_CASES]
)
def test_invalid_row_under_xla_is_nan_not_a_number(name, labels, label_length, logit_length):
    @tf.function(jit_compile=True)
    def fn(x, labels, label_length, logit_length):
        return ctc_loss(labels, x, label_length, logit_length)

    args = [tf.constant(np.asarray(a, np.int32)) for a in (labels, label_length, logit_length)]
    loss, grad = loss_and_gradient(fn, *args)
    assert np.isnan(loss[1]) and np.all(np.isnan(grad[1]))
    # The valid rows are untouched.
    good = ctc_loss(LABELS[[0, 2]], LOGITS[[0, 2]], LABEL_LENGTH[[0, 2]], LOGIT_LENGTH[[0, 2]])
    np.testing.assert_allclose(loss[[0, 2]], good.numpy(), rtol=1e-5)
    assert np.all(np.isfinite(grad[[0, 2]]))


def test_invalid_row_through_keras_compile_with_jit():
    import keras

    model = keras.Sequential([keras.Input((8, 3)), keras.layers.Dense(K)])
    model.compile(optimizer="sgd", loss=CTCLoss(padding_value=-1), jit_compile=True)
    x = np.ones((2, 8, 3), np.float32)
    y = np.array([[1, 7], [2, -1]], np.int32)  # 7 >= K
    assert np.isnan(model.evaluate(x, y, verbose=0))


@pytest.mark.parametrize(
    "name,labels,label_length,logit_length", BAD_ROW_CASES, ids=[c[0] for c in BAD_ROW_CASES]
)
def test_static_values_raise_at_trace_time(name, labels, label_length, logit_length):
    @tf.function(jit_compile=True)
    def fn(x):
        return ctc_loss(
            tf.constant(labels), x, tf.constant(label_length), tf.constant(logit_length)
        )

    with pytest.raises(
        tf.errors.InvalidArgumentError, match="`(labels|label_length|logit_length)`"
    ):
        fn.get_concrete_function(tf.TensorSpec([3, 8, K]))


@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_on_a_valid_frame_is_nan(zero_infinity, bad):
    logits = LOGITS.copy()
    logits[0, 3, 2] = bad
    logits[2, 7, 1] = bad  # past logit_length (6): ignored
    x = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = ctc_loss(LABELS, x, LABEL_LENGTH, LOGIT_LENGTH, zero_infinity=zero_infinity)
    grad = tape.gradient(loss, x).numpy()
    reference = tf.nn.ctc_loss(
        LABELS, logits, LABEL_LENGTH, LOGIT_LENGTH, logits_time_major=False
    ).numpy()
    assert np.isnan(loss[0]) and np.isnan(reference[0])
    assert np.all(np.isnan(grad[0]))
    assert np.all(np.isfinite(loss[1:])) and np.all(np.isfinite(grad[1:]))


def test_nan_on_a_valid_frame_of_an_infeasible_sequence_is_still_nan():
    logits = LOGITS.copy()
    logits[0, 0, 0] = np.nan
    loss = ctc_loss(LABELS, logits, LABEL_LENGTH, [2, 7, 6], zero_infinity=True).numpy()
    assert np.isnan(loss[0])


@pytest.mark.parametrize("xla", [True, False])
def test_zero_frames(xla):
    from ctc_newton.losses import set_xla

    set_xla(xla)
    try:
        logits = tf.zeros([2, 0, K])
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = tf.function(ctc_loss)([[1], [0]], logits, [1, 0], [0, 0])
        grad = tape.gradient(loss, logits)
        np.testing.assert_array_equal(loss.numpy(), [np.inf, 0.0])
        assert grad.shape == (2, 0, K)
        reference = tf.nn.ctc_loss(
            tf.constant([[1], [0]]), tf.zeros([2, 1, K]), [1, 0], [0, 0], logits_time_major=False
        )
        assert reference.numpy()[1] == 0.0
    finally:
        set_xla(True)


def test_sparse_labels_with_gaps_match_tf():
    sparse = tf.SparseTensor([[0, 0], [0, 2], [0, 5], [1, 1], [2, 3]], [1, 2, 3, 4, 2], [3, 6])
    ours = ctc_loss(sparse, LOGITS, None, LOGIT_LENGTH).numpy()
    theirs = tf.nn.ctc_loss(
        sparse, LOGITS, None, LOGIT_LENGTH, logits_time_major=False, blank_index=0
    ).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    packed = ctc_loss([[1, 2, 3], [4, 0, 0], [2, 0, 0]], LOGITS, [3, 1, 1], LOGIT_LENGTH).numpy()
    np.testing.assert_allclose(ours, packed, rtol=1e-6)


@pytest.mark.parametrize("which", ["labels", "label_length", "logit_length"])
def test_int64_beyond_int32_does_not_wrap_into_range(which):
    args = dict(
        labels=LABELS.astype(np.int64),
        label_length=LABEL_LENGTH.astype(np.int64),
        logit_length=LOGIT_LENGTH.astype(np.int64),
    )
    args[which] = args[which].copy()
    args[which].flat[0] = 2**32 + 1  # an int32 cast would make it 1
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"`{which}`"):
        ctc_loss(args["labels"], LOGITS, args["label_length"], args["logit_length"])


def test_numpy_integer_blank_index():
    expected = ctc_loss(LABELS, LOGITS, LABEL_LENGTH, LOGIT_LENGTH, blank_index=0)
    for blank in (np.int64(0), np.int32(0)):
        got = ctc_loss(LABELS, LOGITS, LABEL_LENGTH, LOGIT_LENGTH, blank_index=blank)
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
    with pytest.raises(TypeError, match="blank_index"):
        ctc_loss(LABELS, LOGITS, LABEL_LENGTH, LOGIT_LENGTH, blank_index=True)
