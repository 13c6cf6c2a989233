"""CTC decoding: greedy (best path) and beam search, over TensorFlow's decoders."""

from typing import NamedTuple

import keras
import tensorflow as tf

__all__ = ["DecodeResult", "greedy_decode", "beam_search_decode"]


class DecodeResult(NamedTuple):
    """Decoded label sequences.

    Attributes:
      labels: ``tf.RaggedTensor`` ``[B, None]`` (greedy) or ``[B, top_paths, None]``
        (beam search) of int32 class ids, blanks removed.
      scores: ``[B]`` (greedy: negative sum of the best frame logits, as TF reports)
        or ``[B, top_paths]`` (beam search: log-probabilities of the beams).
    """

    labels: tf.RaggedTensor
    scores: tf.Tensor


def _lengths(logits, logit_length):
    if logit_length is None:
        return tf.fill([tf.shape(logits)[0]], tf.shape(logits)[1])
    return tf.cast(logit_length, tf.int32)


def _to_ragged(dense):
    """Keras' decoders pad with -1; drop the padding."""
    return tf.RaggedTensor.from_tensor(dense, padding=-1)


def greedy_decode(
    logits, logit_length=None, *, blank_index: int = 0, merge_repeated: bool = True
) -> DecodeResult:
    """Best-path decoding: argmax per frame, merge repeats, drop blanks.

    Args:
      logits: ``[B, T, K]`` logits (or log-probabilities).
      logit_length: ``[B]`` valid frames per sequence; all ``T`` when None.
      blank_index: class id of the blank, in ``[-K, K)``.
      merge_repeated: merge repeated labels that are not separated by a blank.

    Returns:
      A `DecodeResult` with ``labels`` ``[B, None]``.
    """
    logits = tf.convert_to_tensor(logits)
    decoded, scores = keras.ops.ctc_decode(
        logits,
        _lengths(logits, logit_length),
        strategy="greedy",
        merge_repeated=merge_repeated,
        mask_index=blank_index % logits.shape[-1],
    )
    return DecodeResult(_to_ragged(decoded[0]), scores[:, 0])


def beam_search_decode(
    logits, logit_length=None, *, blank_index: int = 0, beam_width: int = 100, top_paths: int = 1
) -> DecodeResult:
    """Prefix beam search (``tf.nn.ctc_beam_search_decoder``).

    Args:
      logits: ``[B, T, K]`` logits.
      logit_length: ``[B]`` valid frames per sequence; all ``T`` when None.
      blank_index: class id of the blank, in ``[-K, K)``.
      beam_width: number of beams kept.
      top_paths: number of hypotheses returned per sequence (``<= beam_width``).

    Returns:
      A `DecodeResult` with ``labels`` ``[B, top_paths, None]`` and ``scores``
      ``[B, top_paths]``.

    Raises:
      ValueError: ``top_paths`` outside ``[1, beam_width]``.
    """
    if not 1 <= top_paths <= beam_width:
        raise ValueError(f"`top_paths`={top_paths} must be in [1, beam_width={beam_width}].")
    logits = tf.convert_to_tensor(logits)
    decoded, scores = keras.ops.ctc_decode(
        logits,
        _lengths(logits, logit_length),
        strategy="beam_search",
        beam_width=beam_width,
        top_paths=top_paths,
        mask_index=blank_index % logits.shape[-1],
    )
    ragged = [_to_ragged(d) for d in tf.unstack(decoded, num=top_paths)]
    labels = tf.stack(ragged, axis=1)
    return DecodeResult(labels, scores)
