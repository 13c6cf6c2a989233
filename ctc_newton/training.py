"""Training a recognizer on a bundled task with a named optimizer, logging each epoch.

What ``ctc-newton train`` and ``compare``, the examples and the notebooks share: the
optimizer each name means with its mini-batch settings, and `train_one`, which records
loss, test label error rate and wall-clock time after every epoch.
"""

import time
from typing import Dict, List

# Second-order steps want larger batches; Adam wants many small ones.
DEFAULT_BATCH = {
    "adam": 32,
    "lbfgs": 500,
    "hessian-free": 250,
    "gauss-newton": 250,
    "trust-ncg": 250,
    "newton-cg": 250,
    "levenberg-marquardt": 250,
    "kfac": 64,
}


MIN_DAMPING = 1e-2
HF_CG_ITERATIONS = 6


def make_optimizer(name: str, learning_rate: float = 1e-2):
    """The optimizer ``--optimizer name`` trains with: the registry's class with the
    mini-batch settings below (Adam: Keras', with ``learning_rate``)."""
    if name == "adam":
        import keras

        return keras.optimizers.Adam(learning_rate)
    from ctc_newton.optimizers import registry

    return registry.get(name, **MINI_BATCH_SETTINGS[name])


# The squared per-example-gradient preconditioner costs one backward pass per line
# for a recurrent model (seconds per step here); the command line leaves it off.
# Each step's damping adapts on its own batch; a floor keeps one batch's quadratic
# model from taking over (without it the loss rose again after epoch 3).
# Short CG runs per mini-batch reach a given error rate sooner in wall-clock time
# (digit lines, 2 CPU cores: 6 iterations reached 5.0% in 76-101 s, 50 in 211 s).
MINI_BATCH_SETTINGS: Dict[str, Dict[str, object]] = {
    "hessian-free": dict(
        damping=1.0,
        max_cg_iterations=HF_CG_ITERATIONS,
        preconditioner=False,
        min_damping=MIN_DAMPING,
    ),
    "gauss-newton": dict(damping=1.0, max_cg_iterations=50, min_damping=MIN_DAMPING),
    "trust-ncg": dict(max_cg_iterations=50),
    "newton-cg": dict(max_cg_iterations=50),
    "lbfgs": dict(max_iterations=10),
    # CTC is not least squares: Gauss-Newton products with lambda I, Nielsen's rule.
    "levenberg-marquardt": dict(damping=1.0, max_cg_iterations=50, min_damping=MIN_DAMPING),
    "kfac": dict(),
}


class EpochLog:
    """Keras callback recording loss, test label error rate and wall time per epoch."""

    def __init__(self, test, printer=None):
        import keras

        outer = self

        class Callback(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                outer.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                from ctc_newton.recognizer import evaluate

                elapsed = outer.offset + time.perf_counter() - outer.start
                rate, _ = evaluate(self.model, test)
                row = {
                    "epoch": epoch + 1,
                    "seconds": elapsed,
                    "loss": float(logs.get("loss", float("nan"))),
                    "test_label_error_rate": rate,
                }
                for key in ("damping", "cg_iterations", "rho"):
                    if key in logs:
                        row[key] = float(logs[key])
                outer.rows.append(row)
                if printer:
                    printer(row)

        self.rows: List[Dict] = []
        self.start = 0.0
        self.offset = 0.0  # seconds already spent before a resume
        self.callback = Callback()


def train_one(
    optimizer_name,
    data,
    epochs,
    batch_size,
    units,
    seed,
    learning_rate,
    printer=None,
    verbose=0,
    checkpoint=None,
    dataset: str = "digit-lines",
    optimizer=None,
):
    """Trains a fresh recognizer for ``dataset`` (or resumes ``checkpoint``) on ``data``.

    ``optimizer``, when given, is used instead of the one ``optimizer_name`` means
    (benchmarks of settings the command line does not offer).

    Returns:
      The model and the per-epoch rows (epoch, seconds, loss, test label error rate).
    """
    from ctc_newton import CTCLoss
    from ctc_newton.datasets import get_task
    from ctc_newton.recognizer import build_recognizer

    model, initial_epoch, rows = None, 0, []
    if checkpoint is not None and checkpoint.resumable():
        model, initial_epoch, rows = checkpoint.load()
    if model is None:
        task = get_task(dataset)
        model = build_recognizer(
            units=units,
            seed=seed,
            features=task.features,
            num_classes=task.num_classes,
            name=dataset.replace("-", "_") + "_recognizer",
        )
        if optimizer is None:
            optimizer = make_optimizer(optimizer_name, learning_rate)
        model.compile(optimizer=optimizer, loss=CTCLoss())
    log = EpochLog(data.test, printer)
    log.rows.extend(rows)
    log.offset = rows[-1]["seconds"] if rows else 0.0
    callbacks = [log.callback] + ([checkpoint.callback(log)] if checkpoint else [])
    model.fit(
        data.train.inputs,
        data.train.labels,
        batch_size=batch_size,
        epochs=epochs,
        initial_epoch=initial_epoch,
        verbose=verbose,
        callbacks=callbacks,
        shuffle=True,
    )
    return model, log.rows


def epoch_table(results: Dict[str, List[Dict]]) -> List[str]:
    """Markdown lines of the per-epoch rows of `train_one` runs, by optimizer name."""
    lines = [
        "| optimizer | epoch | seconds | training loss | test label error rate |",
        "|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        for r in rows:
            lines.append(
                f"| {name} | {r['epoch']} | {r['seconds']:.1f} | {r['loss']:.4f} | "
                f"{r['test_label_error_rate']:.4f} |"
            )
    return lines
