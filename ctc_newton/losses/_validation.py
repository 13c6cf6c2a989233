"""Input checks for the CTC loss: static ones always, run-time ones on request."""

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
        raise ValueError(f"Batch sizes disagree ({listing}); every input must describe "
                         "the same batch of sequences.")


def check_num_classes(num_classes):
    if isinstance(num_classes, int) and num_classes < 1:
        raise ValueError("`logits` has K = 0 classes on its last axis; CTC needs at least "
                         "the blank class.")


def normalize_blank_index(blank_index, num_classes):
    """Maps ``blank_index`` in ``[-K, K)`` to ``[0, K)``; static check when K is known."""
    if not isinstance(blank_index, int) and not tf.is_tensor(blank_index):
        raise TypeError(f"`blank_index` must be an integer, got {blank_index!r}.")
    if isinstance(blank_index, int) and isinstance(num_classes, int):
        if not -num_classes <= blank_index < num_classes:
            raise ValueError(f"`blank_index`={blank_index} is out of range for K = "
                             f"{num_classes} classes; use a value in [{-num_classes}, "
                             f"{num_classes}).")
        return blank_index % num_classes
    return tf.math.floormod(tf.cast(blank_index, tf.int32), num_classes)


def runtime_checks(labels, label_length, logit_length, num_frames, num_classes, blank,
                   blank_index):
    """Assertions on values, returned as a list of ops (no-ops in eager once passed)."""
    width = tf.shape(labels)[1]
    batch = tf.shape(labels)[0]
    in_label = tf.range(width)[tf.newaxis, :] < label_length[:, tf.newaxis]
    checks = [
        tf.debugging.assert_equal(
            tf.shape(label_length)[0], batch,
            message="`label_length` must have one entry per sequence of `labels`."),
        tf.debugging.assert_equal(
            tf.shape(logit_length)[0], batch,
            message="`logit_length` must have one entry per sequence of `labels`."),
        tf.debugging.assert_non_negative(
            label_length, message="`label_length` has a negative entry."),
        tf.debugging.assert_less_equal(
            label_length, width,
            message="`label_length` exceeds the width of `labels`; pad `labels` or fix "
                    "the lengths."),
        tf.debugging.assert_non_negative(
            logit_length, message="`logit_length` has a negative entry."),
        tf.debugging.assert_less_equal(
            logit_length, num_frames,
            message="`logit_length` exceeds the number of frames of `logits`."),
        tf.debugging.assert_greater(
            num_classes, 0, message="`logits` has K = 0 classes on its last axis."),
    ]
    if tf.is_tensor(blank_index):
        blank_index = tf.cast(blank_index, tf.int32)
        checks += [
            tf.debugging.assert_greater_equal(
                blank_index, -num_classes, message="`blank_index` is below -K."),
            tf.debugging.assert_less(
                blank_index, num_classes, message="`blank_index` is not below K."),
        ]
    valid = tf.where(in_label, labels, tf.zeros_like(labels))
    checks += [
        tf.debugging.assert_non_negative(
            valid, message="`labels` holds a negative class id inside `label_length`."),
        tf.debugging.assert_less(
            valid, num_classes,
            message="`labels` holds a class id >= K (the number of classes of `logits`) "
                    "inside `label_length`."),
        tf.debugging.assert_equal(
            tf.reduce_any(in_label & tf.equal(labels, blank)), False,
            message="`labels` holds the blank class inside `label_length`; labels must "
                    "not contain `blank_index`."),
    ]
    return checks
