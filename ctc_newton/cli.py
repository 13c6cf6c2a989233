"""The ``ctc-newton`` command line: train, compare and transcribe on the bundled CTC tasks.

``ctc-newton train`` trains the recurrent CTC recognizer on one of the bundled tasks
(``--dataset``: handwritten digit lines from scikit-learn's digits, spoken digit lines
from the Free Spoken Digit Dataset, activity sentences from smartwatch sensors) with a
chosen optimizer, printing per-epoch training loss and test label error rate, a few
decoded test sequences, and saving the model. ``ctc-newton compare`` trains several
optimizers from the same initialization and writes a plot and a table against epochs
and wall-clock time.
``ctc-newton transcribe`` decodes input sequences with a saved model.
"""

import argparse
import json
import os
import sys
import tempfile
from typing import Dict, List, Optional

import numpy as np

from ctc_newton.training import DEFAULT_BATCH, make_optimizer, train_one  # noqa: F401

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The second-order names are ctc_newton.optimizers.registry's (a test checks). They are
# listed here for a launcher that parses before importing TensorFlow; today the package's
# __init__ imports it first (--help takes seconds).
OPTIMIZERS = ("hessian-free", "gauss-newton", "trust-ncg", "newton-cg", "lbfgs",
              "levenberg-marquardt", "adam")
# ctc_newton.datasets.TASKS's names (a test checks), listed for the same reason.
DATASETS = ("digit-lines", "spoken-digits", "activities")
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
_seed = _integer("an integer in [0, 2**32)", 0, 2 ** 32)


def _optimizer_list(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown optimizer(s) {unknown or text!r}; choose from {', '.join(OPTIMIZERS)}")
    return names


def save_atomically(model, path: str) -> None:
    """Saves to a temporary file beside ``path``, then renames: an interrupted save never
    truncates an existing model."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(suffix=".keras", dir=directory)
    os.close(handle)
    try:
        model.save(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


class Checkpoint:
    """The model and the epoch log after every epoch, beside the output, for ``--resume``.

    ``<output>.checkpoint.keras`` holds the model with its optimizer state;
    ``<output>.checkpoint.json`` the finished epochs' rows and the settings, which
    must match on resume (same data, same model).
    """

    def __init__(self, output: str, settings: Dict):
        stem = output[:-len(".keras")]
        self.model_path = stem + ".checkpoint.keras"
        self.log_path = stem + ".checkpoint.json"
        self.settings = settings

    def resumable(self) -> bool:
        return os.path.exists(self.model_path) and os.path.exists(self.log_path)

    def load(self):
        import keras

        with open(self.log_path) as f:
            saved = json.load(f)
        if saved["settings"] != self.settings:
            changed = sorted(k for k in self.settings
                             if saved["settings"].get(k) != self.settings[k])
            raise SystemExit(f"ctc-newton train: --resume: the checkpoint {self.log_path} "
                             f"was made with other settings ({', '.join(changed)}); rerun "
                             "with the same arguments, or drop --resume to start afresh.")
        model = keras.models.load_model(self.model_path)
        return model, saved["epoch"], saved["rows"]

    def callback(self, log):
        import keras

        outer = self

        class Save(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                save_atomically(self.model, outer.model_path)
                temporary = outer.log_path + ".tmp"
                with open(temporary, "w") as f:
                    json.dump({"epoch": epoch + 1, "rows": log.rows,
                               "settings": outer.settings}, f)
                os.replace(temporary, outer.log_path)

        return Save()

    def remove(self) -> None:
        for path in (self.model_path, self.log_path):
            if os.path.exists(path):
                os.remove(path)


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


def _task(args):
    """The dataset's `Task`, with the dataset's defaults filled into ``args``."""
    from ctc_newton.datasets import get_task

    task = get_task(args.dataset)
    if args.max_labels is None:
        args.max_labels = task.max_labels
    if args.units is None:
        args.units = task.units
    if args.epochs is None:
        args.epochs = task.epochs
    return task


def _load(args, task):
    try:
        return task.load(args.train_size, args.test_size, args.max_labels, args.seed)
    except ImportError as error:
        raise SystemExit(f"ctc-newton: --dataset {args.dataset}: {error}") from None


def cmd_train(args) -> int:
    from ctc_newton.recognizer import evaluate, examples

    task = _task(args)
    batch = args.batch_size or DEFAULT_BATCH[args.optimizer]
    settings = {k: getattr(args, k) for k in ("dataset", "optimizer", "epochs", "train_size",
                                              "test_size", "max_labels", "units",
                                              "learning_rate", "seed")}
    settings["batch_size"] = batch
    checkpoint = Checkpoint(args.output, settings)
    if args.resume and not checkpoint.resumable():
        print(f"ctc-newton train: --resume: no checkpoint at {checkpoint.model_path}; "
              "starting afresh.", flush=True)
    elif not args.resume and checkpoint.resumable():
        checkpoint.remove()  # a stale checkpoint of an earlier run
    print(f"ctc-newton train: {args.optimizer}, {args.epochs} epochs, batch {batch}, "
          f"{args.train_size} training / {args.test_size} test {task.description}",
          flush=True)
    data = _load(args, task)

    def printer(row):
        extra = "".join(f", {k} {row[k]:.3g}" for k in ("damping", "cg_iterations")
                        if k in row)
        print(f"epoch {row['epoch']:3d}  {row['seconds']:7.1f}s  loss {row['loss']:.4f}  "
              f"test label error rate {row['test_label_error_rate']:.4f}{extra}", flush=True)

    try:
        model, _ = train_one(args.optimizer, data, args.epochs, batch, args.units, args.seed,
                             args.learning_rate, printer, verbose=1 if args.progress else 0,
                             checkpoint=checkpoint, dataset=args.dataset)
    except KeyboardInterrupt:
        where = (f"the last finished epoch is saved in {checkpoint.model_path}; continue "
                 "with the same command and --resume" if checkpoint.resumable()
                 else "no epoch had finished")
        print(f"\nctc-newton train: interrupted; {where}.", file=sys.stderr, flush=True)
        return 130
    rate, decoded = evaluate(model, data.test)
    print(f"final test label error rate: {rate:.4f}")
    print(f"decoded test {task.noun}:")
    rows = examples(data.test, decoded, 5, task.alphabet)
    width = max(len(row["truth"]) for row in rows)
    for row in rows:
        print(f"  truth {row['truth']:>{width}}   decoded {row['decoded']}")
    save_atomically(model, args.output)
    checkpoint.remove()
    print(f"saved the model to {args.output}")
    return 0


DIGITS = "0123456789"


def _alphabet(text: str) -> List[str]:
    """``--alphabet``: one character per label, or comma-separated words."""
    return [w.strip() for w in text.split(",")] if "," in text else list(text)


def read_inputs(path: str) -> np.ndarray:
    """``[N, T, F]`` float32 inputs from a ``.npy`` array (``[T, F]``: one sequence) or a
    ``.npz`` holding ``inputs``; padded frames as the model's Masking layer expects."""
    if path.endswith(".npz"):
        with np.load(path) as archive:
            if "inputs" not in archive:
                raise ValueError(f"{path} holds {sorted(archive)}, not `inputs`")
            inputs = archive["inputs"]
    else:
        inputs = np.load(path)
    inputs = np.asarray(inputs, np.float32)
    if inputs.ndim == 2:
        inputs = inputs[np.newaxis]
    if inputs.ndim != 3:
        raise ValueError(f"{path}: inputs must be [sequences, frames, features] or "
                         f"[frames, features], got shape {inputs.shape}")
    return inputs


def transcribe(model, inputs: np.ndarray, beam_width: int = 0,
               batch_size: int = 256) -> List[List[int]]:
    """Decoded label ids (blank 0 removed) of each input sequence.

    Frames the model masks (its Masking layer) are not decoded; a model without a
    mask decodes every frame. ``beam_width`` 0 is greedy decoding, else prefix beam
    search with that many beams.
    """
    import tensorflow as tf

    from ctc_newton import beam_search_decode, greedy_decode
    from ctc_newton._keras_adapter import get_keras_mask

    decoded = []
    for start in range(0, len(inputs), batch_size):
        logits = model(inputs[start:start + batch_size], training=False)
        mask = get_keras_mask(logits)
        length = None if mask is None else tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        if beam_width:
            best = beam_search_decode(logits, length, beam_width=beam_width).labels.to_list()
            decoded.extend(paths[0] for paths in best)
        else:
            decoded.extend(greedy_decode(logits, length).labels.to_list())
    return decoded


def cmd_transcribe(args) -> int:
    import keras

    model = keras.models.load_model(args.model)  # ctc_newton's classes are registered
    inputs = read_inputs(args.inputs)
    num_classes = model.output_shape[-1]
    alphabet = _alphabet(args.alphabet)
    if alphabet and len(alphabet) != num_classes - 1:
        raise ValueError(f"--alphabet has {len(alphabet)} symbols but the model has "
                         f"{num_classes - 1} labels besides the blank; pass one symbol per "
                         "label (or comma-separated words), or --alphabet '' for label ids")
    separator = "" if all(len(symbol) == 1 for symbol in alphabet) else " "
    for labels in transcribe(model, inputs, args.beam_width):
        if alphabet:
            print(separator.join(alphabet[k - 1] for k in labels))
        else:
            print(" ".join(str(k) for k in labels))
    return 0


def cmd_compare(args) -> int:
    try:
        import matplotlib
        matplotlib.use("Agg")
    except ImportError:
        print("ctc-newton compare needs matplotlib: pip install 'ctc_newton[examples]'",
              file=sys.stderr)
        return 2
    from ctc_newton.plotting import plot_histories

    task = _task(args)
    data = _load(args, task)
    results = {}
    for name in args.optimizers:
        batch = args.batch_size or DEFAULT_BATCH[name]
        print(f"training with {name} (batch {batch}) ...", flush=True)
        _, rows = train_one(name, data, args.epochs, batch, args.units, args.seed,
                            args.learning_rate, dataset=args.dataset)
        results[name] = rows
        last = rows[-1]
        print(f"  {name}: loss {last['loss']:.4f}, test label error rate "
              f"{last['test_label_error_rate']:.4f} after {last['seconds']:.1f}s", flush=True)
    os.makedirs(args.output_dir, exist_ok=True)
    figure = plot_histories(results, f"CTC {task.noun}: optimizers from one initialization")
    plot = os.path.join(args.output_dir, "compare.png")
    figure.savefig(plot, dpi=100)
    table = os.path.join(args.output_dir, "compare.md")
    with open(table, "w") as f:
        f.write(_provenance(args, task) + "\n\n")
        f.write("| optimizer | epoch | seconds | training loss | test label error rate |\n")
        f.write("|---|---|---|---|---|\n")
        for name, rows in results.items():
            for r in rows:
                f.write(f"| {name} | {r['epoch']} | {r['seconds']:.1f} | {r['loss']:.4f} | "
                        f"{r['test_label_error_rate']:.4f} |\n")
    with open(os.path.join(args.output_dir, "compare.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {plot} and {table}")
    return 0


def _provenance(args, task) -> str:
    """Where a comparison ran: settings, date, machine and versions (for results files)."""
    import datetime
    import platform

    import keras
    import tensorflow as tf

    import ctc_newton

    batches = ", ".join(f"{name} {args.batch_size or DEFAULT_BATCH[name]}"
                        for name in args.optimizers)
    return (f"`ctc-newton compare`: {task.description}; {args.train_size} training / "
            f"{args.test_size} test sequences, up to {args.max_labels} labels; "
            f"{args.epochs} epochs; batch {batches}; GRU {args.units} units each way; "
            f"Adam learning rate {args.learning_rate}; seed {args.seed}. "
            f"{datetime.datetime.now().isoformat(timespec='minutes')}, {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}, TensorFlow "
            f"{tf.__version__}, Keras {keras.__version__}, ctc_newton {ctc_newton.__version__}.")


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where the help text explains a None."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ctc-newton", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--dataset", choices=DATASETS, default="digit-lines",
                       help="digit-lines: handwriting (scikit-learn); spoken-digits: speech "
                            "(pip install 'ctc_newton[speech]'); activities: smartwatch "
                            "sensors (pip install 'ctc_newton[activities]')")
        p.add_argument("--epochs", type=_positive_int, default=None,
                       help="passes over the data; default: 6 (activities: 8)")
        p.add_argument("--batch-size", type=_positive_int, default=None,
                       help="default: 32 for adam, 250 for the second-order methods")
        p.add_argument("--train-size", type=_positive_int, default=2000,
                       help="training sequences")
        p.add_argument("--test-size", type=_positive_int, default=500,
                       help="test sequences (from sources never seen in training)")
        p.add_argument("--max-labels", "--max-digits", type=_positive_int, default=None,
                       dest="max_labels",
                       help="longest label sequence (digits, or activity segments); "
                            "default: 5 digits, 4 activities")
        p.add_argument("--units", type=_positive_int, default=None,
                       help="GRU units in each direction; default: 32 (activities: 16, "
                            "which generalizes better from its 40 training recordings)")
        p.add_argument("--learning-rate", type=float, default=1e-2, help="adam only")
        p.add_argument("--seed", type=_seed, default=0,
                       help="data split and initialization")

    train = commands.add_parser("train", help="train a recognizer on one of the tasks",
                                formatter_class=_HelpWithDefaults)
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="hessian-free",
                       help="second-order method, or adam as the baseline")
    train.add_argument("--output", default=None,
                       help="where to save the trained model (.keras); default: "
                            "<dataset>.keras, e.g. digit_lines.keras")
    train.add_argument("--progress", action="store_true", help="show Keras' progress bar")
    train.add_argument("--resume", action="store_true",
                       help="continue from the checkpoint that an interrupted run with the "
                            "same arguments left beside --output (saved after every epoch)")
    common(train)
    read = commands.add_parser(
        "transcribe", formatter_class=_HelpWithDefaults,
        help="decode input sequences with a trained model, one line per sequence",
        description="Decodes each input sequence with a model saved by `ctc-newton train` "
                    "(or any Keras CTC model whose outputs are per-frame logits, blank 0): "
                    "one line per sequence on stdout.")
    read.add_argument("model", help="a saved model (.keras)")
    read.add_argument("inputs", help="a .npy array [sequences, frames, features] (or "
                                     "[frames, features]), or a .npz holding `inputs`; "
                                     "pad with the value the model masks")
    read.add_argument("--beam-width", type=_non_negative_int, default=0,
                      help="0: greedy decoding; else prefix beam search with this many beams")
    read.add_argument("--alphabet", default=DIGITS,
                      help="the symbol of each label 1, 2, ..., or comma-separated words "
                           "(standing,walking,running,badminton for an activities model); "
                           "'' prints label ids")
    compare = commands.add_parser("compare", help="compare optimizers from one start",
                                  formatter_class=_HelpWithDefaults)
    compare.add_argument("--optimizers", type=_optimizer_list,
                         default="adam,hessian-free",
                         help=f"comma-separated, from {', '.join(OPTIMIZERS)}")
    compare.add_argument("--output-dir", default="compare_results",
                         help="where the plot and the table go")
    common(compare)
    return top


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "transcribe":
        for name in ("model", "inputs"):
            if not os.path.isfile(getattr(args, name)):
                parser().error(f"{name} {getattr(args, name)!r}: no such file")
        try:
            return cmd_transcribe(args)
        except ValueError as error:
            parser().error(str(error))
    if args.command == "train":
        if args.output is None:
            args.output = args.dataset.replace("-", "_") + ".keras"
        if not args.output.endswith(".keras"):
            parser().error("--output must end with .keras")
        problem = _check_writable(args.output)
        if problem:
            parser().error(f"--output: {problem}")
        return cmd_train(args)
    problem = _check_writable(os.path.join(args.output_dir, "compare.md"))
    if problem:
        parser().error(f"--output-dir: {problem}")
    return cmd_compare(args)


if __name__ == "__main__":
    sys.exit(main())
