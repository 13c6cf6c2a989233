"""A small recurrent CTC recognizer for the bundled tasks, and its evaluation."""

from typing import Dict, List, Sequence, Tuple

import keras
import numpy as np

from ctc_newton.datasets import HEIGHT, NUM_CLASSES, PAD_VALUE
from ctc_newton.datasets.digit_lines import ALPHABET as DIGITS
from ctc_newton.decoding import greedy_decode
from ctc_newton.metrics import label_error_rate


def build_recognizer(
    units: int = 32,
    seed: int = 0,
    *,
    features: int = HEIGHT,
    num_classes: int = NUM_CLASSES,
    name: str = "digit_line_recognizer",
) -> keras.Model:
    """Masking -> bidirectional GRU -> per-frame logits over the labels and the blank.

    The defaults are the digit-lines task's; a `ctc_newton.datasets.Task` gives the
    others' ``features`` and ``num_classes``.

    Args:
      units: GRU units each way.
      seed: initialization seed (same seed, same initial weights).
      features: features per input frame.
      num_classes: labels plus the blank (class 0).
      name: the model's name.

    Returns:
      An uncompiled Keras model mapping ``[B, T, features]`` to ``[B, T, num_classes]``.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, features), name="columns")
    x = keras.layers.Masking(PAD_VALUE)(inputs)
    x = keras.layers.Bidirectional(keras.layers.GRU(units, return_sequences=True, use_cudnn=False))(
        x
    )
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def decode(
    model: keras.Model, inputs: np.ndarray, input_length: np.ndarray, batch_size: int = 256
) -> List[List[int]]:
    """Greedy-decoded label sequences, as symbol indices (label - 1: digit d is d)."""
    decoded = []
    for start in range(0, len(inputs), batch_size):
        logits = model(inputs[start : start + batch_size], training=False)
        labels = greedy_decode(logits, input_length[start : start + batch_size]).labels
        decoded.extend([[k - 1 for k in row] for row in labels.to_list()])
    return decoded


def evaluate(model: keras.Model, split) -> Tuple[float, List[List[int]]]:
    """Label error rate of greedy decoding on a `Split`, and the decoded strings."""
    import tensorflow as tf

    decoded = decode(model, split.inputs, split.input_length)
    truth = [list(row[:n] - 1) for row, n in zip(split.labels, split.label_length)]
    rate = float(
        label_error_rate(
            tf.ragged.constant(decoded, dtype=tf.int32), tf.ragged.constant(truth, dtype=tf.int32)
        )
    )
    return rate, decoded


def as_text(indices, alphabet: Sequence[str] = DIGITS) -> str:
    """Symbol indices as text: joined directly for one-character symbols, else by spaces."""
    separator = "" if all(len(symbol) == 1 for symbol in alphabet) else " "
    return separator.join(alphabet[int(k)] for k in indices) or "(empty)"


def examples(
    split, decoded, count: int = 5, alphabet: Sequence[str] = DIGITS
) -> List[Dict[str, str]]:
    """The first ``count`` sequences' true and decoded text."""
    out = []
    for i in range(min(count, len(decoded))):
        truth = split.labels[i][: split.label_length[i]] - 1
        out.append({"truth": as_text(truth, alphabet), "decoded": as_text(decoded[i], alphabet)})
    return out
