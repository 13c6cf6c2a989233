"""Bad input raises an error that names the argument."""

import numpy as np
import pytest
import tensorflow as tf

from ctc_newton import ctc_loss

LOGITS = np.zeros((2, 6, 4), np.float32)
LABELS = np.array([[1, 2], [3, 0]], np.int32)


def call(labels=LABELS, logits=LOGITS, label_length=(2, 1), logit_length=(6, 5), **kwargs):
    return ctc_loss(
        labels,
        logits,
        np.asarray(label_length, np.int32),
        np.asarray(logit_length, np.int32),
        **kwargs,
    )


@pytest.mark.parametrize(
    "kwargs,error,pattern",
    [
        (dict(labels=np.array([[1, 4], [3, 0]])), tf.errors.InvalidArgumentError, "labels.*>= K"),
        (
            dict(labels=np.array([[1, -1], [3, 0]])),
            tf.errors.InvalidArgumentError,
            "labels.*negative",
        ),
        (dict(labels=np.array([[1, 0], [3, 0]])), tf.errors.InvalidArgumentError, "labels.*blank"),
        (dict(label_length=(3, 1)), tf.errors.InvalidArgumentError, "label_length.*exceeds"),
        (dict(label_length=(-1, 1)), tf.errors.InvalidArgumentError, "label_length.*negative"),
        (dict(logit_length=(7, 5)), tf.errors.InvalidArgumentError, "logit_length.*exceeds"),
        (dict(logit_length=(-1, 5)), tf.errors.InvalidArgumentError, "logit_length.*negative"),
        (dict(logits=np.zeros((2, 6))), ValueError, "`logits` must have rank 3"),
        (dict(labels=np.array([1, 2])), ValueError, "`labels` must have rank 2"),
        (dict(label_length=[[2, 1]]), ValueError, "`label_length` must have rank 1"),
        (dict(logit_length=6), ValueError, "`logit_length` must have rank 1"),
        (dict(logits=np.zeros((3, 6, 4), np.float32)), ValueError, "Batch sizes disagree"),
        (dict(label_length=(2, 1, 1)), ValueError, "Batch sizes disagree"),
        (dict(logits=np.zeros((2, 6, 0), np.float32)), ValueError, "K = 0"),
        (dict(blank_index=4), ValueError, "`blank_index`=4 is out of range"),
        (dict(blank_index=-5), ValueError, "`blank_index`=-5 is out of range"),
        (dict(logits=np.zeros((2, 6, 4), np.int32)), TypeError, "`logits` must be floating"),
        (dict(labels=np.array([[1.0, 2.0], [3.0, 0.0]])), TypeError, "`labels` must hold integer"),
        (dict(label_length=None), ValueError, "`label_length` is required"),
    ],
)
def test_bad_input_raises_naming_the_argument(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        if "label_length" in kwargs and kwargs["label_length"] is None:
            ctc_loss(LABELS, LOGITS, None, np.array([6, 5]))
        else:
            call(**kwargs)


def test_runtime_checks_inside_tf_function():
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def fn(labels):
        return ctc_loss(labels, LOGITS, [2, 1], [6, 5])

    fn(LABELS)
    with pytest.raises(tf.errors.InvalidArgumentError, match=">= K"):
        fn(np.array([[1, 9], [3, 0]], np.int32))


def test_checks_can_be_turned_off_for_speed():
    loss = call(labels=np.array([[1, 0], [3, 0]]), validate_args=False)
    assert loss.shape == (2,)
