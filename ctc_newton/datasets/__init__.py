"""Real data for CTC tasks that ships with installed packages (no downloads)."""

from ctc_newton.datasets.digit_lines import (HEIGHT, NUM_CLASSES, PAD_VALUE, DigitLines, Split,
                                             as_datasets, load_digit_lines, source_split)

__all__ = ["load_digit_lines", "as_datasets", "source_split", "DigitLines", "Split",
           "NUM_CLASSES", "HEIGHT", "PAD_VALUE"]
