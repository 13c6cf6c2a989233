"""Input checks for the CTC loss.

Static problems (ranks, batch sizes, K = 0, blank out of range) always raise.
Value problems are per sequence: `row_problems` names them, and `ctc_loss`
raises at trace time when the values are static (eager, or constants in a
graph), asserts at run time otherwise, and in every case gives the offending
sequences a NaN loss and gradient. XLA (``jit_compile=True``) drops run-time
asserts, so there the NaN is what reports an invalid row.
"""

import numbers
from typing import List, Tuple

import numpy as np
import tensorflow as tf


def check_rank(tensor, rank, name):
    """Raises ``ValueError`` when the static rank of ``tensor`` is known and wrong."""
    actual = tensor.shape.rank
    if actual is not None and actual != rank:
        raise ValueError(f"`{name}` must have rank {rank}, got shape {tensor.shape}.")


def check_batch_sizes(named_sizes):
    """Raises ``ValueError`` when statically known batch sizes disagree.

    Args:
      named_sizes: list of ``(name, size_or_None)``.
    """
    known = [(n, s) for n, s in named_sizes if s is not None]
    if len({s for _, s in known}) > 1:
        listing = ", ".join(f"`{n}`: {s}" for n, s in known)
        raise ValueError(
            f"Batch sizes disagree ({listing}); every input must describe "
            "the same batch of sequences."
        )


def check_num_classes(num_classes):
    if isinstance(num_classes, int) and num_classes < 1:
        raise ValueError(
            "`logits` has K = 0 classes on its last axis; CTC needs at least the blank class."
        )


def to_int32(tensor, name):
    """Casts integer ids or lengths to int32, saturating, so that values beyond int32
    stay out of range (and fail the checks) instead of wrapping into range."""
    tensor = tf.convert_to_tensor(tensor, name=name)
    if not tensor.dtype.is_integer:
        raise TypeError(f"`{name}` must hold integers, got {tensor.dtype.name}.")
    if tensor.dtype == tf.int32:
        return tensor
    return tf.cast(
        tf.clip_by_value(tf.cast(tensor, tf.int64), tf.int32.min, tf.int32.max), tf.int32
    )


def normalize_blank_index(blank_index, num_classes):
    """Maps ``blank_index`` in ``[-K, K)`` to ``[0, K)``; static check when K is known."""
    if isinstance(blank_index, numbers.Integral) and not isinstance(blank_index, bool):
        blank_index = int(blank_index)  # numpy integers too
    elif not tf.is_tensor(blank_index):
        raise TypeError(f"`blank_index` must be an integer, got {blank_index!r}.")
    if isinstance(blank_index, int) and isinstance(num_classes, int):
        if not -num_classes <= blank_index < num_classes:
            raise ValueError(
                f"`blank_index`={blank_index} is out of range for K = "
                f"{num_classes} classes; use a value in [{-num_classes}, "
                f"{num_classes})."
            )
        return blank_index % num_classes
    return tf.math.floormod(tf.cast(blank_index, tf.int32), num_classes)


def row_problems(
    labels, label_length, logit_length, num_frames, num_classes, blank
) -> List[Tuple[str, tf.Tensor]]:
    """The per-sequence value problems: ``[(message, bad_rows [B] bool), ...]``."""
    width = tf.shape(labels)[1]
    in_label = tf.range(width)[tf.newaxis, :] < label_length[:, tf.newaxis]
    valid = tf.where(in_label, labels, tf.zeros_like(labels))
    return [
        ("`label_length` has a negative entry.", label_length < 0),
        (
            "`label_length` exceeds the width of `labels`; pad `labels` or fix the lengths.",
            label_length > width,
        ),
        ("`logit_length` has a negative entry.", logit_length < 0),
        ("`logit_length` exceeds the number of frames of `logits`.", logit_length > num_frames),
        (
            "`labels` holds a negative class id inside `label_length`.",
            tf.reduce_any(valid < 0, axis=1),
        ),
        (
            "`labels` holds a class id >= K (the number of classes of `logits`) inside "
            "`label_length`.",
            tf.reduce_any(valid >= num_classes, axis=1),
        ),
        (
            "`labels` holds the blank class inside `label_length`; labels must not contain "
            "`blank_index`.",
            tf.reduce_any(in_label & tf.equal(labels, blank), axis=1),
        ),
    ]


def raise_static_problems(
    labels, label_length, logit_length, num_frames, num_classes, blank
) -> None:
    """Raises ``InvalidArgumentError`` now when every value involved is static."""
    values = [tf.get_static_value(t) for t in (labels, label_length, logit_length)]
    if any(v is None for v in values) or not all(
        isinstance(n, int) for n in (num_frames, num_classes, blank)
    ):
        return
    with tf.init_scope():  # evaluate on the static values, outside any graph
        static_labels, static_label_length, static_logit_length = map(tf.constant, values)
        problems = row_problems(
            static_labels, static_label_length, static_logit_length, num_frames, num_classes, blank
        )
        for message, bad in problems:
            if np.any(bad.numpy()):
                raise tf.errors.InvalidArgumentError(None, None, message)


def runtime_checks(problems, batch, label_length, logit_length, num_classes, blank_index):
    """Assertions on the values, returned as a list of ops (no-ops under XLA)."""
    checks = [
        tf.debugging.assert_equal(
            tf.shape(label_length)[0],
            batch,
            message="`label_length` must have one entry per sequence of `labels`.",
        ),
        tf.debugging.assert_equal(
            tf.shape(logit_length)[0],
            batch,
            message="`logit_length` must have one entry per sequence of `labels`.",
        ),
        tf.debugging.assert_greater(
            num_classes, 0, message="`logits` has K = 0 classes on its last axis."
        ),
    ]
    if tf.is_tensor(blank_index):
        blank_index = tf.cast(blank_index, tf.int32)
        checks += [
            tf.debugging.assert_greater_equal(
                blank_index, -num_classes, message="`blank_index` is below -K."
            ),
            tf.debugging.assert_less(
                blank_index, num_classes, message="`blank_index` is not below K."
            ),
        ]
    checks += [
        tf.debugging.assert_equal(tf.reduce_any(bad), False, message=message)
        for message, bad in problems
    ]
    return checks
