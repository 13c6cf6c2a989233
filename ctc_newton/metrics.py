"""Label error rate (edit distance over reference length), as a function and a metric."""

from typing import Optional

import keras
import tensorflow as tf

from ctc_newton.decoding import greedy_decode
from ctc_newton.losses.keras_loss import mask_to_length, padded_label_length

__all__ = ["edit_distances", "label_error_rate", "LabelErrorRate"]


def _as_ragged(labels):
    if isinstance(labels, tf.RaggedTensor):
        return labels
    return tf.RaggedTensor.from_tensor(tf.convert_to_tensor(labels))


def edit_distances(hypotheses, references):
    """Per-sequence Levenshtein distances ``[B]`` between two batches of label sequences.

    Args:
      hypotheses: ``tf.RaggedTensor`` ``[B, None]`` (or a dense tensor with no padding).
      references: ``tf.RaggedTensor`` ``[B, None]`` of the true labels.

    Returns:
      ``[B]`` float32 number of substitutions, insertions and deletions.
    """
    hyp = _as_ragged(hypotheses)
    ref = _as_ragged(references)
    hyp = tf.cast(hyp, tf.int64).to_sparse()
    ref = tf.cast(ref, tf.int64).to_sparse()
    return tf.cast(tf.edit_distance(hyp, ref, normalize=False), tf.float32)


def label_error_rate(hypotheses, references) -> tf.Tensor:
    """Total edit distance divided by total reference length (the LER/CER/WER).

    Args:
      hypotheses: decoded labels, ``tf.RaggedTensor`` ``[B, None]``.
      references: true labels, ``tf.RaggedTensor`` ``[B, None]``.

    Returns:
      A float32 scalar; 0 when there are no reference labels and no hypotheses.
    """
    distances = edit_distances(hypotheses, references)
    total = tf.cast(tf.reduce_sum(_as_ragged(references).row_lengths()), tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(distances), total)


@keras.saving.register_keras_serializable(package="ctc_newton")
class LabelErrorRate(keras.metrics.Metric):
    """Label error rate of greedy decoding, for ``model.compile(metrics=...)``.

    ``y_true`` holds padded labels (as for `CTCLoss`), ``y_pred`` logits
    ``[B, T, K]``; a Keras mask on ``y_pred`` sets the logit lengths. The rate
    is total edits over total reference labels across all batches seen.

    Args:
      blank_index: class id of the blank.
      padding_value: label padding value (negative values are padding too);
        defaults to the blank.
      name: metric name.
    """

    def __init__(
        self,
        blank_index: int = 0,
        padding_value: Optional[int] = None,
        name: str = "label_error_rate",
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        self.blank_index = blank_index
        self.padding_value = padding_value
        self.edits = self.add_weight(name="edits", initializer="zeros")
        self.reference_labels = self.add_weight(name="reference_labels", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        mask = getattr(y_pred, "_keras_mask", None)
        y_pred = tf.convert_to_tensor(y_pred)
        num_classes = y_pred.shape[-1]
        padding = self.padding_value
        if padding is None:
            padding = self.blank_index % num_classes
        labels = tf.cast(y_true, tf.int32)
        label_length, _ = padded_label_length(labels, padding)
        references = tf.RaggedTensor.from_tensor(labels, lengths=label_length)
        logit_length = mask_to_length(mask, tf.shape(y_pred)[1], tf.shape(y_pred)[0])
        decoded = greedy_decode(y_pred, logit_length, blank_index=self.blank_index).labels
        distances = edit_distances(decoded, references)
        lengths = tf.cast(label_length, tf.float32)
        if sample_weight is not None:
            weight = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
            distances, lengths = distances * weight, lengths * weight
        self.edits.assign_add(tf.reduce_sum(distances))
        self.reference_labels.assign_add(tf.reduce_sum(lengths))

    def result(self):
        return tf.math.divide_no_nan(self.edits, self.reference_labels)

    def reset_state(self):
        self.edits.assign(0.0)
        self.reference_labels.assign(0.0)

    def get_config(self):
        config = super().get_config()
        config.update(blank_index=self.blank_index, padding_value=self.padding_value)
        return config
