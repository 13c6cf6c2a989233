"""K-FAC against Adam and Hessian-free on a bundled CTC task, from one initialization.

Trains the task's recognizer with Adam, K-FAC (the command line's, adaptive with
momentum, and the fixed-step mode) and Hessian-free with and without the K-FAC CG
preconditioner; prints and writes, per epoch, seconds, training loss and test label
error rate; the time each reaches Adam's best test label error rate; and the cost of one
K-FAC step relative to one Adam step at the same batch (steady state, tracing
excluded). K-FAC samples output classes, and runs with different seeds of that sampling
(same initialization, same batches) end far apart, so each K-FAC variant runs once per
``--seeds`` entry.

  python benchmarks/kfac.py [--dataset digit-lines] [--scale 1.0] [--seeds 0,1,2]

Writes benchmarks/results/kfac_<dataset>.{md,json,png}. Seconds are only comparable
between runs that had the machine to themselves.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from ctc_newton import training  # noqa: E402
from ctc_newton.datasets import get_task  # noqa: E402
from ctc_newton.optimizers import KFAC, HessianFree  # noqa: E402

HF = training.MINI_BATCH_SETTINGS["hessian-free"]
# name -> (batch, epochs on digit lines, optimizer factory of the K-FAC seed, or None for
# the command line's optimizer)
VARIANTS = {
    "adam": (training.DEFAULT_BATCH["adam"], 30, None),
    "kfac": (training.DEFAULT_BATCH["kfac"], 10, lambda seed: KFAC(seed=seed)),
    "kfac-fixed": (
        64,
        16,
        lambda seed: KFAC(learning_rate=1.0, damping=1e-3, norm_constraint=0.03, seed=seed),
    ),
    "hessian-free": (training.DEFAULT_BATCH["hessian-free"], 6, None),
    "hessian-free+kfac": (
        training.DEFAULT_BATCH["hessian-free"],
        6,
        lambda seed: HessianFree(**{**HF, "preconditioner": "kfac"}),
    ),
}


def step_seconds(name, factory, data, task, batch, steps=20):
    """Median seconds of one training step at ``batch`` (after a traced warm-up)."""
    import numpy as np

    from ctc_newton import CTCLoss
    from ctc_newton.recognizer import build_recognizer

    model = build_recognizer(task.units, 0, features=task.features, num_classes=task.num_classes)
    optimizer = factory(0) if factory else training.make_optimizer(name)
    model.compile(optimizer=optimizer, loss=CTCLoss())
    x, y = data.train.inputs[: batch * steps], data.train.labels[: batch * steps]
    model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, epochs=1, verbose=0)
    times = []

    class Timer:
        def __init__(self):
            import keras

            outer = self

            class Callback(keras.callbacks.Callback):
                def on_train_batch_begin(self, i, logs=None):
                    outer.start = time.perf_counter()

                def on_train_batch_end(self, i, logs=None):
                    times.append(time.perf_counter() - outer.start)

            self.callback = Callback()

    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=[Timer().callback])
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digit-lines")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every variant's epochs")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0,1,2", help="K-FAC sampling seeds")
    args = parser.parse_args()
    task = get_task(args.dataset)
    data = task.load(2000, 500, task.max_labels, 0)
    results, batches = {}, {}
    for name in args.variants.split(","):
        batch, epochs, factory = VARIANTS[name]
        epochs = max(1, round(epochs * args.scale * task.epochs / 6))
        seeds = [int(s) for s in args.seeds.split(",")] if name.startswith("kfac") else [0]
        for seed in seeds:
            label = f"{name} (seed {seed})" if name.startswith("kfac") else name
            print(f"{label}: batch {batch}, {epochs} epochs", flush=True)
            _, rows = training.train_one(
                name.split("+")[0].replace("-fixed", ""),
                data,
                epochs,
                batch,
                task.units,
                0,
                1e-2,
                printer=lambda r: print(
                    f"  epoch {r['epoch']:3d} {r['seconds']:7.1f}s loss {r['loss']:.4f} "
                    f"LER {r['test_label_error_rate']:.4f}",
                    flush=True,
                ),
                dataset=args.dataset,
                optimizer=factory(seed) if factory else None,
            )
            results[label], batches[label] = rows, batch
    target = min(r["test_label_error_rate"] for r in results["adam"])

    def reached(rows):
        hit = [r for r in rows if r["test_label_error_rate"] <= target]
        return (hit[0]["seconds"], hit[0]["epoch"]) if hit else (None, None)

    adam_seconds, _ = reached(results["adam"])
    lines = [
        f"K-FAC on {task.description}: 2000 training / 500 test sequences, GRU "
        f"{task.units} units each way, initialization and batches of seed 0; "
        f"`python benchmarks/kfac.py --dataset {args.dataset}`.",
        "",
        f"Time to Adam's best test label error rate ({target:.4f}):",
        "",
        "| optimizer | batch | seconds | epoch | vs Adam | best LER | at seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        seconds, epoch = reached(rows)
        best = min(rows, key=lambda r: r["test_label_error_rate"])
        ratio = f"{seconds / adam_seconds:.2f}x" if seconds else "not reached"
        shown = f"{seconds:.1f}" if seconds else "-"
        lines.append(
            f"| {name} | {batches[name]} | {shown} | {epoch or '-'} | {ratio} | "
            f"{best['test_label_error_rate']:.4f} | {best['seconds']:.1f} |"
        )
    adam_step = step_seconds("adam", None, data, task, 64)
    lines += ["", "Cost of one training step at batch 64 (median of 20, tracing excluded):", ""]
    lines += ["| optimizer | ms per step | vs Adam |", "|---|---|---|"]
    lines.append(f"| adam | {1000 * adam_step:.1f} | 1.00x |")
    for name in ("kfac", "kfac-fixed"):
        seconds = step_seconds(name, VARIANTS[name][2], data, task, 64)
        lines.append(f"| {name} | {1000 * seconds:.1f} | {seconds / adam_step:.2f}x |")
    lines += [""] + training.epoch_table(results)
    out = os.path.join(os.path.dirname(__file__), "results", f"kfac_{args.dataset}")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(out + ".md", "w") as f:
        f.write(text)
    with open(out + ".json", "w") as f:
        json.dump(results, f, indent=1)
    from ctc_newton.plotting import plot_histories

    plot_histories(results, f"K-FAC on {task.noun}").savefig(out + ".png", dpi=100)


if __name__ == "__main__":
    main()
