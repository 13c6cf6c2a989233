"""The ``ctc-newton`` command line: train, compare and transcribe on the bundled CTC tasks.

``ctc-newton train`` trains the recurrent CTC recognizer on one of the bundled tasks
(``--dataset``: handwritten digit lines from scikit-learn's digits, spoken digit lines
from the Free Spoken Digit Dataset, activity sentences from smartwatch sensors) with a
chosen optimizer, printing per-epoch training loss and test label error rate, a few
decoded test sequences, and saving the model. ``ctc-newton compare`` trains several
optimizers from the same initialization and writes a plot and a table against epochs
and wall-clock time.
``ctc-newton transcribe`` decodes input sequences with a saved model.

This module parses the arguments; ``ctc_newton.cli`` runs the commands. It sits outside
the ``ctc_newton`` package because importing the package loads TensorFlow (it must: that
registers the Keras classes ``keras.models.load_model`` needs), which takes seconds, so
``--help`` and argument errors answer at once. TensorFlow's native log lines are kept
off the terminal; set ``TF_CPP_MIN_LOG_LEVEL=0`` to see them.
"""

import argparse
import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator, List, Optional

# The second-order names are ctc_newton.optimizers.registry's, the dataset names
# ctc_newton.datasets.TASKS's (tests check both); listed here so that parsing needs no
# TensorFlow.
OPTIMIZERS = (
    "hessian-free",
    "gauss-newton",
    "trust-ncg",
    "newton-cg",
    "lbfgs",
    "levenberg-marquardt",
    "kfac",
    "adam",
)
DATASETS = ("digit-lines", "spoken-digits", "activities")
DIGITS = "0123456789"

# Lines that TensorFlow's C++ code writes to stderr while it loads, before absl logging
# is initialized (so TF_CPP_MIN_LOG_LEVEL does not apply to them): absl-style records
# ("I0000 00:00:1795990136.230055   23666 port.cc:153] ..."), absl's warning that
# precedes them, and the continuation of the CPU-feature record.
NATIVE_LOG_LINE = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .* rebuild TensorFlow)"
)


@contextlib.contextmanager
def native_logs_filtered() -> Iterator[None]:
    """Drops TensorFlow's native log records written to file descriptor 2 inside the block.

    Every other line (Python warnings, tracebacks) is written to stderr when the block
    ends. With ``TF_CPP_MIN_LOG_LEVEL=0`` nothing is dropped.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                if not NATIVE_LOG_LINE.match(line)
            ]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def _integer(description: str, low: int, high: Optional[int] = None):
    """An argparse type: an integer in ``[low, high)``, else an error naming ``description``."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}") from None
        if value < low or (high is not None and value >= high):
            raise argparse.ArgumentTypeError(f"expected {description}, got {value}")
        return value

    return parse


_positive_int = _integer("a positive integer", 1)
_non_negative_int = _integer("a non-negative integer", 0)
_seed = _integer("an integer in [0, 2**32)", 0, 2**32)


def _optimizer_list(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown optimizer(s) {unknown or text!r}; choose from {', '.join(OPTIMIZERS)}"
        )
    return names


def _check_writable(path: str) -> Optional[str]:
    """Why ``path`` cannot be written (None when it can), checked before training."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, suffix=".keras"):
            pass
    except OSError as error:
        return f"cannot write to {directory}: {error.strerror or error}"
    if os.path.isdir(path):
        return f"{path} is a directory"
    return None


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where the help text explains a None."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    """The ``ctc-newton`` argument parser (no TensorFlow needed)."""
    summary = __doc__.splitlines()[0].replace("``", "")
    top = argparse.ArgumentParser(prog="ctc-newton", description=summary)
    commands = top.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument(
            "--dataset",
            choices=DATASETS,
            default="digit-lines",
            help="digit-lines: handwriting (scikit-learn); spoken-digits: speech "
            "(pip install 'ctc_newton[speech]'); activities: smartwatch "
            "sensors (pip install 'ctc_newton[activities]')",
        )
        p.add_argument(
            "--epochs",
            type=_positive_int,
            default=None,
            help="passes over the data; default: 6 (activities: 8)",
        )
        p.add_argument(
            "--batch-size",
            type=_positive_int,
            default=None,
            help="default: 32 for adam, 250 for the second-order methods",
        )
        p.add_argument("--train-size", type=_positive_int, default=2000, help="training sequences")
        p.add_argument(
            "--test-size",
            type=_positive_int,
            default=500,
            help="test sequences (from sources never seen in training)",
        )
        p.add_argument(
            "--max-labels",
            "--max-digits",
            type=_positive_int,
            default=None,
            dest="max_labels",
            help="longest label sequence (digits, or activity segments); "
            "default: 5 digits, 4 activities",
        )
        p.add_argument(
            "--units",
            type=_positive_int,
            default=None,
            help="GRU units in each direction; default: 32 (activities: 16, "
            "which generalizes better from its 40 training recordings)",
        )
        p.add_argument("--learning-rate", type=float, default=1e-2, help="adam only")
        p.add_argument("--seed", type=_seed, default=0, help="data split and initialization")

    train = commands.add_parser(
        "train", help="train a recognizer on one of the tasks", formatter_class=_HelpWithDefaults
    )
    train.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="hessian-free",
        help="second-order method, or adam as the baseline",
    )
    train.add_argument(
        "--output",
        default=None,
        help="where to save the trained model (.keras); default: "
        "<dataset>.keras, e.g. digit_lines.keras",
    )
    train.add_argument("--progress", action="store_true", help="show Keras' progress bar")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint that an interrupted run with the "
        "same arguments left beside --output (saved after every epoch)",
    )
    common(train)
    read = commands.add_parser(
        "transcribe",
        formatter_class=_HelpWithDefaults,
        help="decode input sequences with a trained model, one line per sequence",
        description="Decodes each input sequence with a model saved by `ctc-newton train` "
        "(or any Keras CTC model whose outputs are per-frame logits, blank 0): "
        "one line per sequence on stdout.",
    )
    read.add_argument("model", help="a saved model (.keras)")
    read.add_argument(
        "inputs",
        help="a .npy array [sequences, frames, features] (or "
        "[frames, features]), or a .npz holding `inputs`; "
        "pad with the value the model masks",
    )
    read.add_argument(
        "--beam-width",
        type=_non_negative_int,
        default=0,
        help="0: greedy decoding; else prefix beam search with this many beams",
    )
    read.add_argument(
        "--alphabet",
        default=DIGITS,
        help="the symbol of each label 1, 2, ..., or comma-separated words "
        "(standing,walking,running,badminton for an activities model); "
        "'' prints label ids",
    )
    compare = commands.add_parser(
        "compare", help="compare optimizers from one start", formatter_class=_HelpWithDefaults
    )
    compare.add_argument(
        "--optimizers",
        type=_optimizer_list,
        default="adam,hessian-free",
        help=f"comma-separated, from {', '.join(OPTIMIZERS)}",
    )
    compare.add_argument(
        "--output-dir", default="compare_results", help="where the plot and the table go"
    )
    common(compare)
    return top


def _checked(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the checks that need the file system; a usage error if one fails."""
    if args.command == "transcribe":
        for name in ("model", "inputs"):
            if not os.path.isfile(getattr(args, name)):
                parser().error(f"{name} {getattr(args, name)!r}: no such file")
    elif args.command == "train":
        if args.output is None:
            args.output = args.dataset.replace("-", "_") + ".keras"
        if not args.output.endswith(".keras"):
            parser().error("--output must end with .keras")
        problem = _check_writable(args.output)
        if problem:
            parser().error(f"--output: {problem}")
    else:
        problem = _check_writable(os.path.join(args.output_dir, "compare.md"))
        if problem:
            parser().error(f"--output-dir: {problem}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    """Runs ``ctc-newton`` with ``argv`` (default: the process's); returns the exit status.

    Ctrl-C ends a command with one line on stderr and status 130 (``train`` also says
    how to resume).
    """
    args = _checked(parser().parse_args(argv))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with native_logs_filtered():
            from ctc_newton import cli as commands
        if args.command == "transcribe":
            try:
                return commands.cmd_transcribe(args)
            except ValueError as error:
                parser().error(str(error))
        if args.command == "train":
            return commands.cmd_train(args)
        return commands.cmd_compare(args)
    except KeyboardInterrupt:
        print(f"\nctc-newton {args.command}: interrupted.", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
