"""Greedy and beam decoding, label error rate as a function and a Keras metric."""

import keras
import numpy as np
import tensorflow as tf

from ctc_newton import CTCLoss, LabelErrorRate, beam_search_decode, greedy_decode, label_error_rate


def one_hot_logits(paths, classes, scale=10.0):
    return np.stack([np.eye(classes)[p] * scale for p in paths]).astype(np.float32)


def test_greedy_merges_repeats_and_drops_blanks():
    logits = one_hot_logits([[1, 1, 0, 1, 2, 2], [0, 3, 3, 3, 0, 0]], 4)
    result = greedy_decode(logits, [6, 4])
    assert result.labels.to_list() == [[1, 1, 2], [3]]
    result = greedy_decode(logits, [6, 6], blank_index=3)
    assert result.labels.to_list() == [[1, 0, 1, 2], [0, 0]]


def test_beam_search_finds_the_label_sequence_not_the_best_path():
    # Best path is "blank blank" (p=.36) but label "1" has p = .64 - .16 = ... > .36.
    probs = np.array([[[0.6, 0.4], [0.6, 0.4]]], np.float32)
    logits = np.log(probs)
    assert greedy_decode(logits).labels.to_list() == [[]]
    result = beam_search_decode(logits, beam_width=4, top_paths=2)
    assert result.labels.to_list() == [[[1], []]]
    np.testing.assert_allclose(np.exp(result.scores.numpy()), [[0.64, 0.36]], rtol=1e-5)


def test_label_error_rate():
    hyp = tf.ragged.constant([[1, 2, 3], [4]])
    ref = tf.ragged.constant([[1, 3], [4, 4, 4]])
    # 1 insertion + 2 deletions over 5 reference labels.
    np.testing.assert_allclose(label_error_rate(hyp, ref).numpy(), 3 / 5)
    assert label_error_rate(ref, ref).numpy() == 0


def test_metric_accumulates_and_works_in_compile():
    logits = one_hot_logits([[1, 1, 0, 1, 2, 2], [0, 3, 3, 3, 0, 0]], 4)
    labels = np.array([[1, 1, 2], [3, 2, 0]])  # second: one deletion over 2 labels
    metric = LabelErrorRate()
    metric.update_state(labels, logits)
    np.testing.assert_allclose(metric.result().numpy(), 1 / 5)
    metric.update_state(labels[:1], logits[:1])
    np.testing.assert_allclose(metric.result().numpy(), 1 / 8)
    metric.reset_state()
    assert metric.result().numpy() == 0
    assert LabelErrorRate.from_config(metric.get_config()).get_config() == metric.get_config()

    model = keras.Sequential([keras.Input((6, 4)), keras.layers.Identity()])
    model.compile(loss=CTCLoss(), metrics=[LabelErrorRate()])
    results = model.evaluate(logits, labels, verbose=0, return_dict=True)
    np.testing.assert_allclose(results["label_error_rate"], 1 / 5)
