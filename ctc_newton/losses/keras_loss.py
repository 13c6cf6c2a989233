"""`CTCLoss`: the twice-differentiable CTC loss as a Keras 3 loss."""

from typing import Optional

import keras
import tensorflow as tf
from ctc_newton._keras_adapter import reduce_weighted_values

from ctc_newton.losses.ctc import ctc_loss


def padded_label_length(labels, padding_value):
    """Number of leading entries of each row of ``labels`` that are not padding.

    Entries equal to ``padding_value`` or negative are padding.
    """
    is_label = (labels != padding_value) & (labels >= 0)
    return tf.reduce_sum(tf.cast(is_label, tf.int32), axis=1), is_label


def mask_to_length(mask, num_frames, batch):
    """``[B]`` frame counts from a Keras ``[B, T]`` boolean mask (or all ``T``)."""
    if mask is None:
        return tf.fill([batch], num_frames)
    return tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)


@keras.saving.register_keras_serializable(package="ctc_newton")
class CTCLoss(keras.losses.Loss):
    """CTC loss for ``model.compile(loss=...)``, differentiable twice.

    ``y_true`` holds padded labels ``[B, L]``; ``y_pred`` holds logits
    ``[B, T, K]``. By default it follows Keras' own CTC convention: class 0 is the
    blank and labels are padded with 0. Beyond it, the logit length of each
    sequence comes from the Keras mask of ``y_pred`` when the model produces one
    (e.g. after ``keras.layers.Masking`` or ``mask_zero=True``), so padded frames
    contribute nothing; without a mask all ``T`` frames count.

    ``y_true`` may also be a dict ``{"labels": [B, L], "logit_length": [B]}`` to
    give the frame counts explicitly.

    Args:
      blank_index: class id of the blank, in ``[-K, K)``.
      padding_value: label value marking padding (negative values are padding
        too). Defaults to the blank (0 in Keras' convention).
      zero_infinity: infeasible sequences give 0 loss and 0 gradient instead of inf.
      validate_args: run-time checks of label ids and lengths.
      reduction: Keras reduction over the batch (default ``"sum_over_batch_size"``).
      name: loss name.
    """

    def __init__(
        self,
        blank_index: int = 0,
        padding_value: Optional[int] = None,
        zero_infinity: bool = False,
        validate_args: bool = True,
        reduction: str = "sum_over_batch_size",
        name: str = "ctc_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.blank_index = blank_index
        self.padding_value = padding_value
        self.zero_infinity = zero_infinity
        self.validate_args = validate_args

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Keras' default __call__ would apply the [B, T] output mask to the [B]
        # losses; here the mask gives the logit lengths instead.
        mask = getattr(y_pred, "_keras_mask", None)
        logit_length = None
        if isinstance(y_true, dict):
            logit_length = y_true.get("logit_length")
            y_true = y_true["labels"]
        y_pred = tf.convert_to_tensor(y_pred)
        if logit_length is None:
            logit_length = mask_to_length(mask, tf.shape(y_pred)[1], tf.shape(y_pred)[0])
        with tf.name_scope(self.name):
            losses = self._per_sequence(y_true, y_pred, logit_length)
            return reduce_weighted_values(
                losses, sample_weight=sample_weight, reduction=self.reduction, dtype=losses.dtype
            )

    def call(self, y_true, y_pred):
        """Per-sequence losses ``[B]`` with full-length logits (or the mask's lengths)."""
        mask = getattr(y_pred, "_keras_mask", None)
        y_pred = tf.convert_to_tensor(y_pred)
        return self._per_sequence(
            y_true, y_pred, mask_to_length(mask, tf.shape(y_pred)[1], tf.shape(y_pred)[0])
        )

    def _per_sequence(self, y_true, y_pred, logit_length):
        labels = tf.cast(tf.convert_to_tensor(y_true), tf.int32)
        num_classes = y_pred.shape[-1] or tf.shape(y_pred)[-1]
        padding = self.padding_value
        if padding is None:
            padding = (
                self.blank_index % num_classes
                if isinstance(num_classes, int)
                else tf.math.floormod(self.blank_index, num_classes)
            )
        label_length, is_label = padded_label_length(labels, padding)
        if self.validate_args:
            # Padding must be a suffix, or the count above would be wrong.
            prefix = tf.range(tf.shape(labels)[1])[tf.newaxis, :] < label_length[:, tf.newaxis]
            check = tf.debugging.assert_equal(
                is_label,
                prefix,
                message="`y_true` has padding before a label; pad labels at the end.",
            )
            with tf.control_dependencies([check]):
                labels = tf.identity(labels)
        loss = ctc_loss(
            labels,
            y_pred,
            label_length,
            logit_length,
            blank_index=self.blank_index,
            zero_infinity=self.zero_infinity,
            validate_args=self.validate_args,
        )
        return tf.cast(loss, tf.float64 if loss.dtype == tf.float64 else tf.float32)

    def get_config(self):
        config = super().get_config()
        config.update(
            blank_index=self.blank_index,
            padding_value=self.padding_value,
            zero_infinity=self.zero_infinity,
            validate_args=self.validate_args,
        )
        return config
