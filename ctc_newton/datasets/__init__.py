"""Real data for CTC tasks that ships with installed packages (no downloads)."""

from ctc_newton.datasets._sequences import PAD_VALUE, Split, TrainTest, as_datasets
from ctc_newton.datasets.activities import ACTIVITIES, load_activity_sentences
from ctc_newton.datasets.digit_lines import (
    HEIGHT,
    NUM_CLASSES,
    DigitLines,
    load_digit_lines,
    source_split,
)
from ctc_newton.datasets.spoken_digits import load_spoken_digit_lines, recording_split
from ctc_newton.datasets.tasks import TASKS, Task, get_task

__all__ = [
    "load_digit_lines",
    "load_spoken_digit_lines",
    "load_activity_sentences",
    "as_datasets",
    "source_split",
    "recording_split",
    "TrainTest",
    "DigitLines",
    "Split",
    "Task",
    "TASKS",
    "get_task",
    "ACTIVITIES",
    "NUM_CLASSES",
    "HEIGHT",
    "PAD_VALUE",
]
