"""Handwritten digit strings built from scikit-learn's digits (UCI optdigits, 43 writers).

Each line pastes 1 to ``max_digits`` real 8x8 digit images side by side, with random
gaps or overlaps and vertical jitter; every image column is one time step of
``HEIGHT`` features and the label is the digit string. Source images are split into
train and test *before* composing, so no glyph appears on both sides. Everything is
deterministic given the seed and loads offline from the installed scikit-learn.

Labels use class ``d + 1`` for digit ``d``; class 0 is the CTC blank and the label
padding (Keras' convention), so ``NUM_CLASSES = 11``. Padded frames hold
``PAD_VALUE`` so a ``keras.layers.Masking(PAD_VALUE)`` layer recovers the lengths.
"""

from typing import Tuple

import numpy as np

from ctc_newton.datasets._sequences import PAD_VALUE, Split  # noqa: F401 (re-exported)
from ctc_newton.datasets._sequences import (
    Composed,
    TrainTest,
    check_sizes,
    pad,
    require,
    stratified_split,
)

NUM_CLASSES = 11
HEIGHT = 10  # 8 rows plus one row of jitter room above and below
ALPHABET = tuple("0123456789")

DigitLines = TrainTest  # the name this dataset's result had first


def _load_digits():
    datasets = require("sklearn.datasets", "examples", "The digit-lines data")
    digits = datasets.load_digits()
    return digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int32)


def _compose(images, targets, pool, count, min_digits, max_digits, gap, rng) -> Composed:
    by_digit = [pool[targets[pool] == d] for d in range(10)]
    lines, labels = [], []
    for _ in range(count):
        length = rng.integers(min_digits, max_digits + 1)
        digits = rng.integers(0, 10, size=length)
        pieces = []
        for digit in digits:
            image = images[rng.choice(by_digit[digit])]
            shift = rng.integers(0, HEIGHT - 8 + 1)
            canvas = np.zeros((HEIGHT, 8), np.float32)
            canvas[shift : shift + 8] = image
            pieces.append(canvas)
        gaps = rng.integers(gap[0], gap[1] + 1, size=length + 1)
        width = 8 * length + int(np.sum(gaps[1:-1])) + 2 * max(gap[1], 1)
        line = np.zeros((HEIGHT, width), np.float32)
        column = max(gap[1], 1)
        for piece, space in zip(pieces, gaps[1:]):
            # Overlapping columns keep the darker stroke.
            line[:, column : column + 8] = np.maximum(line[:, column : column + 8], piece)
            column += 8 + space
        lines.append(line[:, : column - gaps[-1] + max(gap[1], 1)].T)
        labels.append(digits + 1)
    return lines, labels


def load_digit_lines(
    num_train: int = 2000,
    num_test: int = 500,
    *,
    min_digits: int = 1,
    max_digits: int = 5,
    gap: Tuple[int, int] = (-2, 3),
    test_fraction: float = 0.25,
    seed: int = 0,
) -> TrainTest:
    """Builds the digit-lines task as numpy arrays.

    Args:
      num_train: number of training lines.
      num_test: number of test lines.
      min_digits: fewest digits in a line (>= 1).
      max_digits: most digits in a line.
      gap: inclusive range of columns between neighbouring digits (negative overlaps).
      test_fraction: share of the 1797 source images reserved for test lines.
      seed: makes everything deterministic.

    Returns:
      `TrainTest` with ``train`` and ``test`` `Split`s.

    Raises:
      ValueError: on sizes or ranges that cannot make a dataset.
    """
    check_sizes(
        num_train, num_test, min_digits, max_digits, ["min_digits", "max_digits"], test_fraction
    )
    if gap[0] > gap[1] or gap[0] < -4:
        raise ValueError(f"`gap` must be an increasing pair with gap[0] >= -4, got {gap}.")
    rng = np.random.default_rng(seed)
    images, targets = _load_digits()
    train_pool, test_pool = stratified_split(targets, test_fraction, rng)
    train = _compose(images, targets, train_pool, num_train, min_digits, max_digits, gap, rng)
    test = _compose(images, targets, test_pool, num_test, min_digits, max_digits, gap, rng)
    return TrainTest(pad(*train, max_digits), pad(*test, max_digits))


def source_split(seed: int = 0, test_fraction: float = 0.25):
    """The source-image indices used for train and test lines (for leakage checks)."""
    _, targets = _load_digits()
    return stratified_split(targets, test_fraction, np.random.default_rng(seed))
