"""The digit-lines dataset: deterministic, leak-free, consistent and feasible."""

import numpy as np
import pytest

from ctc_newton.datasets import (
    HEIGHT,
    NUM_CLASSES,
    PAD_VALUE,
    as_datasets,
    load_digit_lines,
    source_split,
)
from ctc_newton.datasets.digit_lines import _load_digits


def test_deterministic_given_the_seed():
    a, b = load_digit_lines(50, 20, seed=3), load_digit_lines(50, 20, seed=3)
    c = load_digit_lines(50, 20, seed=4)
    for x, y in zip(a.train + a.test, b.train + b.test):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.train.labels, c.train.labels)


def test_shapes_lengths_padding_and_feasibility():
    data = load_digit_lines(200, 50, max_digits=6)
    for split in data:
        n, frames, height = split.inputs.shape
        assert height == HEIGHT and split.labels.shape == (n, 6)
        assert split.input_length.max() == frames
        for row, labels, t, length in zip(
            split.inputs, split.labels, split.input_length, split.label_length
        ):
            assert 1 <= length <= 6
            assert np.all((labels[:length] >= 1) & (labels[:length] < NUM_CLASSES))
            assert np.all(labels[length:] == 0)
            assert np.all(row[t:] == PAD_VALUE) and np.all(row[:t] >= 0)
            repeats = int(np.sum(labels[1:length] == labels[: length - 1]))
            assert t >= length + repeats  # CTC can align it


def test_no_glyph_appears_on_both_sides():
    train_pool, test_pool = source_split(seed=0)
    assert not set(train_pool) & set(test_pool)
    images, _ = _load_digits()
    assert len(train_pool) + len(test_pool) == len(images)
    # Without overlaps every 8-column block of a line is one source glyph (shifted).
    data = load_digit_lines(40, 40, gap=(1, 2), seed=0)
    keys = {}
    for side, pool in (("train", train_pool), ("test", test_pool)):
        for i in pool:
            keys.setdefault(images[i].tobytes(), set()).add(side)
    for side, split in (("train", data.train), ("test", data.test)):
        for row, t, length in zip(split.inputs, split.input_length, split.label_length):
            columns = row[:t].T  # [HEIGHT, t]
            matches = []
            for start in range(t - 7):
                block = columns[:, start : start + 8]
                for shift in range(HEIGHT - 8 + 1):
                    if block[:shift].any() or block[shift + 8 :].any():
                        continue
                    found = keys.get(np.ascontiguousarray(block[shift : shift + 8]).tobytes())
                    if found:
                        matches.append(found)
            assert len(matches) >= length  # every glyph of the line is a source image
            assert all(side in found for found in matches), "a glyph from the other side"


def test_tf_data_pipeline():
    train, test = as_datasets(load_digit_lines(40, 10), batch_size=16)
    x, y = next(iter(train))
    assert x.shape[0] == 16 and x.shape[2] == HEIGHT and y.shape == (16, 5)
    assert sum(int(b[0].shape[0]) for b in test) == 10


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_train=0),
        dict(min_digits=3, max_digits=2),
        dict(gap=(3, 1)),
        dict(test_fraction=1.0),
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        load_digit_lines(**{"num_train": 5, "num_test": 5, **kwargs})
