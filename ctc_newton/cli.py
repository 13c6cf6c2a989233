"""What the ``ctc-newton`` commands do: train, compare and transcribe.

The arguments are parsed and checked by the top-level ``ctc_newton_cli`` module, which
imports this one (and with it TensorFlow) only once they are valid.
"""

import json
import os
import sys
import tempfile
from typing import Dict, List

import numpy as np

from ctc_newton.training import DEFAULT_BATCH, epoch_table, train_one


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
        stem = output[: -len(".keras")]
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
            changed = sorted(
                k for k in self.settings if saved["settings"].get(k) != self.settings[k]
            )
            raise SystemExit(
                f"ctc-newton train: --resume: the checkpoint {self.log_path} "
                f"was made with other settings ({', '.join(changed)}); rerun "
                "with the same arguments, or drop --resume to start afresh."
            )
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
                    json.dump({"epoch": epoch + 1, "rows": log.rows, "settings": outer.settings}, f)
                os.replace(temporary, outer.log_path)

        return Save()

    def remove(self) -> None:
        for path in (self.model_path, self.log_path):
            if os.path.exists(path):
                os.remove(path)


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
    settings = {
        k: getattr(args, k)
        for k in (
            "dataset",
            "optimizer",
            "epochs",
            "train_size",
            "test_size",
            "max_labels",
            "units",
            "learning_rate",
            "seed",
        )
    }
    settings["batch_size"] = batch
    checkpoint = Checkpoint(args.output, settings)
    if args.resume and not checkpoint.resumable():
        print(
            f"ctc-newton train: --resume: no checkpoint at {checkpoint.model_path}; "
            "starting afresh.",
            flush=True,
        )
    elif not args.resume and checkpoint.resumable():
        checkpoint.remove()  # a stale checkpoint of an earlier run
    print(
        f"ctc-newton train: {args.optimizer}, {args.epochs} epochs, batch {batch}, "
        f"{args.train_size} training / {args.test_size} test {task.description}",
        flush=True,
    )
    data = _load(args, task)

    def printer(row):
        extra = "".join(f", {k} {row[k]:.3g}" for k in ("damping", "cg_iterations") if k in row)
        print(
            f"epoch {row['epoch']:3d}  {row['seconds']:7.1f}s  loss {row['loss']:.4f}  "
            f"test label error rate {row['test_label_error_rate']:.4f}{extra}",
            flush=True,
        )

    try:
        model, _ = train_one(
            args.optimizer,
            data,
            args.epochs,
            batch,
            args.units,
            args.seed,
            args.learning_rate,
            printer,
            verbose=1 if args.progress else 0,
            checkpoint=checkpoint,
            dataset=args.dataset,
        )
    except KeyboardInterrupt:
        where = (
            f"the last finished epoch is saved in {checkpoint.model_path}; continue "
            "with the same command and --resume"
            if checkpoint.resumable()
            else "no epoch had finished"
        )
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
        raise ValueError(
            f"{path}: inputs must be [sequences, frames, features] or "
            f"[frames, features], got shape {inputs.shape}"
        )
    return inputs


def transcribe(
    model, inputs: np.ndarray, beam_width: int = 0, batch_size: int = 256
) -> List[List[int]]:
    """Decoded label ids (blank 0 removed) of each input sequence.

    Frames the model masks (its Masking layer) are not decoded; a model without a
    mask decodes every frame. ``beam_width`` 0 is greedy decoding, else prefix beam
    search with that many beams.
    """
    import tensorflow as tf

    from ctc_newton import beam_search_decode, greedy_decode
    from ctc_newton._keras_adapter import get_keras_mask

    decoded: List[List[int]] = []
    for start in range(0, len(inputs), batch_size):
        logits = model(inputs[start : start + batch_size], training=False)
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
        raise ValueError(
            f"--alphabet has {len(alphabet)} symbols but the model has "
            f"{num_classes - 1} labels besides the blank; pass one symbol per "
            "label (or comma-separated words), or --alphabet '' for label ids"
        )
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
        print(
            "ctc-newton compare needs matplotlib: pip install 'ctc_newton[examples]'",
            file=sys.stderr,
        )
        return 2
    from ctc_newton.plotting import plot_histories

    task = _task(args)
    data = _load(args, task)
    results = {}
    for name in args.optimizers:
        batch = args.batch_size or DEFAULT_BATCH[name]
        print(f"training with {name} (batch {batch}) ...", flush=True)
        _, rows = train_one(
            name,
            data,
            args.epochs,
            batch,
            args.units,
            args.seed,
            args.learning_rate,
            dataset=args.dataset,
        )
        results[name] = rows
        last = rows[-1]
        print(
            f"  {name}: loss {last['loss']:.4f}, test label error rate "
            f"{last['test_label_error_rate']:.4f} after {last['seconds']:.1f}s",
            flush=True,
        )
    os.makedirs(args.output_dir, exist_ok=True)
    figure = plot_histories(results, f"CTC {task.noun}: optimizers from one initialization")
    plot = os.path.join(args.output_dir, "compare.png")
    figure.savefig(plot, dpi=100)
    table = os.path.join(args.output_dir, "compare.md")
    with open(table, "w") as f:
        f.write(_provenance(args, task) + "\n\n")
        f.write("\n".join(epoch_table(results)) + "\n")
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

    batches = ", ".join(
        f"{name} {args.batch_size or DEFAULT_BATCH[name]}" for name in args.optimizers
    )
    return (
        f"`ctc-newton compare`: {task.description}; {args.train_size} training / "
        f"{args.test_size} test sequences, up to {args.max_labels} labels; "
        f"{args.epochs} epochs; batch {batches}; GRU {args.units} units each way; "
        f"Adam learning rate {args.learning_rate}; seed {args.seed}. "
        f"{datetime.datetime.now().isoformat(timespec='minutes')}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, TensorFlow "
        f"{tf.__version__}, Keras {keras.__version__}, ctc_newton {ctc_newton.__version__}."
    )
