"""The datasets by name, as the command line, the examples and the recognizer use them."""

from typing import Callable, Dict, NamedTuple, Tuple

from ctc_newton.datasets import activities, digit_lines, spoken_digits
from ctc_newton.datasets._sequences import TrainTest


class Task(NamedTuple):
    """A CTC task: how to build it and the shape of its inputs and labels.

    Attributes:
      load: ``load(num_train, num_test, max_labels, seed) -> TrainTest``.
      features: features per frame.
      alphabet: the symbol of each label ``1, 2, ...`` (label 0 is the blank).
      description: one line for people, naming the source and the split.
      max_labels: the longest label sequence by default.
      units: GRU units each way that suit the task on 2 CPU cores.
      epochs: passes over the default 2,000 training sequences that the command line
        makes by default.
    """

    load: Callable[[int, int, int, int], TrainTest]
    features: int
    alphabet: Tuple[str, ...]
    description: str
    max_labels: int = 5
    units: int = 32
    epochs: int = 6

    @property
    def num_classes(self) -> int:
        return len(self.alphabet) + 1

    @property
    def noun(self) -> str:
        """What one sequence is called, e.g. "spoken digit lines"."""
        return self.description.split(" (")[0]


TASKS: Dict[str, Task] = {
    "digit-lines": Task(
        lambda n, m, k, seed: digit_lines.load_digit_lines(n, m, max_digits=k, seed=seed),
        digit_lines.HEIGHT,
        digit_lines.ALPHABET,
        "digit lines (scikit-learn digits; test glyphs never seen in training)",
    ),
    "spoken-digits": Task(
        lambda n, m, k, seed: spoken_digits.load_spoken_digit_lines(n, m, max_digits=k, seed=seed),
        spoken_digits.NUM_FEATURES,
        spoken_digits.ALPHABET,
        "spoken digit lines (FSDD MFCCs; test recordings never heard in training)",
    ),
    "activities": Task(
        lambda n, m, k, seed: activities.load_activity_sentences(n, m, max_segments=k, seed=seed),
        activities.NUM_FEATURES,
        activities.ACTIVITIES,
        "activity sentences (BasicMotions smartwatch sensors; test recordings never seen "
        "in training)",
        max_labels=4,
        units=16,
        epochs=8,
    ),
}


def get_task(name: str) -> Task:
    """The `Task` called ``name``.

    Raises:
      ValueError: naming the known tasks when ``name`` is not one.
    """
    if name not in TASKS:
        raise ValueError(f"Unknown dataset {name!r}; choose from {', '.join(TASKS)}.")
    return TASKS[name]
