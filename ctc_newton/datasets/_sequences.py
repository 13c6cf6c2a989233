"""What every CTC dataset here shares: the split type, padding, splits by source, tf.data.

Labels use class ``k + 1`` for symbol ``k``; class 0 is the CTC blank and the label
padding (Keras' convention). Padded frames hold `PAD_VALUE` in every feature, so a
``keras.layers.Masking(PAD_VALUE)`` layer recovers the lengths.
"""

import importlib
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

PAD_VALUE = -1.0

# Composed sequences ``[T_i, features]`` and their label arrays, before `pad`.
Composed = Tuple[List[np.ndarray], List[np.ndarray]]


class Split(NamedTuple):
    """One side of the data.

    Attributes:
      inputs: ``[N, T, features]`` float32 frames, padded with `PAD_VALUE`.
      labels: ``[N, max_labels]`` int32 classes ``symbol + 1``, padded with 0.
      input_length: ``[N]`` frames of each sequence.
      label_length: ``[N]`` labels of each sequence.
    """

    inputs: np.ndarray
    labels: np.ndarray
    input_length: np.ndarray
    label_length: np.ndarray


class TrainTest(NamedTuple):
    """A dataset: ``train`` and ``test`` `Split`s made from disjoint source recordings."""

    train: Split
    test: Split


def stratified_split(
    targets: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray]:
    """Sorted indices of train and test sources: each class split in the same proportion."""
    train: List[int] = []
    test: List[int] = []
    for target in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == target))
        cut = int(round(len(members) * test_fraction))
        test.extend(members[:cut])
        train.extend(members[cut:])
    return np.array(sorted(train)), np.array(sorted(test))


def pad(sequences: Sequence[np.ndarray], labels: Sequence[np.ndarray], max_labels: int) -> Split:
    """Stacks ``[T_i, features]`` sequences and their label arrays into a padded `Split`.

    Raises:
      ValueError: if a real frame equals the padding in every feature (the Masking
        layer would drop it).
    """
    frames = max(len(sequence) for sequence in sequences)
    features = sequences[0].shape[1]
    inputs = np.full((len(sequences), frames, features), PAD_VALUE, np.float32)
    padded_labels = np.zeros((len(sequences), max_labels), np.int32)
    for i, (sequence, label) in enumerate(zip(sequences, labels)):
        inputs[i, : len(sequence)] = sequence
        padded_labels[i, : len(label)] = label
    input_length = np.array([len(x) for x in sequences], np.int32)
    real = np.arange(frames) < input_length[:, None]
    if np.any(np.all(inputs == PAD_VALUE, axis=-1) & real):
        raise ValueError(
            "A real frame equals PAD_VALUE in every feature; the Masking layer "
            "would drop it. Shift the features or change PAD_VALUE."
        )
    return Split(inputs, padded_labels, input_length, np.array([len(x) for x in labels], np.int32))


def standardizer(frames: np.ndarray):
    """``f(x) = (x - mean) / std`` per feature, with statistics of ``frames`` (training only)."""
    frames = np.asarray(frames, np.float64)
    mean = frames.mean(axis=0)
    scale = frames.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return lambda x: ((x - mean) / scale).astype(np.float32)


def require(module: str, extra: str, what: str):
    """Imports an optional dependency, or raises an ImportError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{what} needs the `{module.split('.')[0]}` package: pip install 'ctc_newton[{extra}]'."
        ) from error


def check_sizes(
    num_train: int,
    num_test: int,
    min_labels: int,
    max_labels: int,
    names: List[str],
    test_fraction: Optional[float] = None,
) -> None:
    """Raises a ValueError naming the argument for sizes that cannot make a dataset."""
    if num_train < 1 or num_test < 1:
        raise ValueError("`num_train` and `num_test` must be >= 1.")
    if not 1 <= min_labels <= max_labels:
        raise ValueError(f"Need 1 <= {names[0]} <= {names[1]}, got {min_labels}, {max_labels}.")
    if test_fraction is not None and not 0 < test_fraction < 1:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction}.")


def as_datasets(data: TrainTest, batch_size: int = 64, shuffle_seed: int = 0):
    """``(train, test)`` ``tf.data.Dataset``s of ``(inputs, labels)`` batches."""
    import tensorflow as tf

    def make(split, shuffle):
        ds = tf.data.Dataset.from_tensor_slices((split.inputs, split.labels))
        if shuffle:
            ds = ds.shuffle(len(split.inputs), seed=shuffle_seed)
        return ds.batch(batch_size)

    return make(data.train, True), make(data.test, False)
