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

from typing import NamedTuple, Tuple

import numpy as np

NUM_CLASSES = 11
HEIGHT = 10  # 8 rows plus one row of jitter room above and below
PAD_VALUE = -1.0


class Split(NamedTuple):
    """One side of the data.

    Attributes:
      inputs: ``[N, T, HEIGHT]`` float32 columns in [0, 1], padded with `PAD_VALUE`.
      labels: ``[N, max_digits]`` int32 classes ``digit + 1``, padded with 0.
      input_length: ``[N]`` frames of each line.
      label_length: ``[N]`` digits of each line.
    """

    inputs: np.ndarray
    labels: np.ndarray
    input_length: np.ndarray
    label_length: np.ndarray


class DigitLines(NamedTuple):
    train: Split
    test: Split


def _load_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError("The digit-lines data needs scikit-learn: "
                          "pip install 'ctc_newton[examples]'.") from error
    digits = load_digits()
    return digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int32)


def _split_sources(targets, test_fraction, rng):
    """Indices of source images for train and test, stratified by digit."""
    train, test = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(targets == digit))
        cut = int(round(len(members) * test_fraction))
        test.extend(members[:cut])
        train.extend(members[cut:])
    return np.array(sorted(train)), np.array(sorted(test))


def _compose(images, targets, pool, count, min_digits, max_digits, gap, rng):
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
            canvas[shift:shift + 8] = image
            pieces.append(canvas)
        gaps = rng.integers(gap[0], gap[1] + 1, size=length + 1)
        width = 8 * length + int(np.sum(gaps[1:-1])) + 2 * max(gap[1], 1)
        line = np.zeros((HEIGHT, width), np.float32)
        column = max(gap[1], 1)
        for piece, space in zip(pieces, gaps[1:]):
            # Overlapping columns keep the darker stroke.
            line[:, column:column + 8] = np.maximum(line[:, column:column + 8], piece)
            column += 8 + space
        lines.append(line[:, :column - gaps[-1] + max(gap[1], 1)].T)
        labels.append(digits + 1)
    return lines, labels


def _pad(lines, labels, max_digits) -> Split:
    frames = max(len(line) for line in lines)
    inputs = np.full((len(lines), frames, HEIGHT), PAD_VALUE, np.float32)
    padded_labels = np.zeros((len(lines), max_digits), np.int32)
    for i, (line, label) in enumerate(zip(lines, labels)):
        inputs[i, :len(line)] = line
        padded_labels[i, :len(label)] = label
    return Split(inputs, padded_labels, np.array([len(x) for x in lines], np.int32),
                 np.array([len(x) for x in labels], np.int32))


def load_digit_lines(num_train: int = 2000, num_test: int = 500, *, min_digits: int = 1,
                     max_digits: int = 5, gap: Tuple[int, int] = (-2, 3),
                     test_fraction: float = 0.25, seed: int = 0) -> DigitLines:
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
      `DigitLines` with ``train`` and ``test`` `Split`s.

    Raises:
      ValueError: on sizes or ranges that cannot make a dataset.
    """
    if num_train < 1 or num_test < 1:
        raise ValueError("`num_train` and `num_test` must be >= 1.")
    if not 1 <= min_digits <= max_digits:
        raise ValueError(f"Need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}.")
    if gap[0] > gap[1] or gap[0] < -4:
        raise ValueError(f"`gap` must be an increasing pair with gap[0] >= -4, got {gap}.")
    if not 0 < test_fraction < 1:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction}.")
    rng = np.random.default_rng(seed)
    images, targets = _load_digits()
    train_pool, test_pool = _split_sources(targets, test_fraction, rng)
    train = _compose(images, targets, train_pool, num_train, min_digits, max_digits, gap, rng)
    test = _compose(images, targets, test_pool, num_test, min_digits, max_digits, gap, rng)
    return DigitLines(_pad(*train, max_digits), _pad(*test, max_digits))


def source_split(seed: int = 0, test_fraction: float = 0.25):
    """The source-image indices used for train and test lines (for leakage checks)."""
    _, targets = _load_digits()
    return _split_sources(targets, test_fraction, np.random.default_rng(seed))


def as_datasets(data: DigitLines, batch_size: int = 64, shuffle_seed: int = 0):
    """``(train, test)`` ``tf.data.Dataset``s of ``(inputs, labels)`` batches."""
    import tensorflow as tf

    def make(split, shuffle):
        ds = tf.data.Dataset.from_tensor_slices((split.inputs, split.labels))
        if shuffle:
            ds = ds.shuffle(len(split.inputs), seed=shuffle_seed)
        return ds.batch(batch_size)

    return make(data.train, True), make(data.test, False)
