"""A small recurrent CTC recognizer for the digit-lines task, and its evaluation."""

from typing import Dict, List, Tuple

import keras
import numpy as np

from ctc_newton.datasets import HEIGHT, NUM_CLASSES, PAD_VALUE
from ctc_newton.decoding import greedy_decode
from ctc_newton.metrics import label_error_rate


def build_recognizer(units: int = 32, seed: int = 0) -> keras.Model:
    """Masking -> bidirectional GRU -> per-frame logits over digits and blank.

    Args:
      units: GRU units each way.
      seed: initialization seed (same seed, same initial weights).

    Returns:
      An uncompiled Keras model mapping ``[B, T, HEIGHT]`` to ``[B, T, NUM_CLASSES]``.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, HEIGHT), name="columns")
    x = keras.layers.Masking(PAD_VALUE)(inputs)
    x = keras.layers.Bidirectional(keras.layers.GRU(units, return_sequences=True,
                                                    use_cudnn=False))(x)
    outputs = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="digit_line_recognizer")


def decode(model: keras.Model, inputs: np.ndarray, input_length: np.ndarray,
           batch_size: int = 256) -> List[List[int]]:
    """Greedy-decoded digit strings (as lists of digits 0-9)."""
    decoded = []
    for start in range(0, len(inputs), batch_size):
        logits = model(inputs[start:start + batch_size], training=False)
        labels = greedy_decode(logits, input_length[start:start + batch_size]).labels
        decoded.extend([[k - 1 for k in row] for row in labels.to_list()])
    return decoded


def evaluate(model: keras.Model, split) -> Tuple[float, List[List[int]]]:
    """Label error rate of greedy decoding on a `Split`, and the decoded strings."""
    import tensorflow as tf

    decoded = decode(model, split.inputs, split.input_length)
    truth = [list(row[:n] - 1) for row, n in zip(split.labels, split.label_length)]
    rate = float(label_error_rate(tf.ragged.constant(decoded, dtype=tf.int32),
                                  tf.ragged.constant(truth, dtype=tf.int32)))
    return rate, decoded


def as_text(digits) -> str:
    return "".join(str(int(d)) for d in digits) or "(empty)"


def examples(split, decoded, count: int = 5) -> List[Dict[str, str]]:
    out = []
    for i in range(min(count, len(decoded))):
        truth = split.labels[i][:split.label_length[i]] - 1
        out.append({"truth": as_text(truth), "decoded": as_text(decoded[i])})
    return out
