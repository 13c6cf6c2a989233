"""Hessian-free on a bundled task: batch size and damping floor (for issue 15).

The command line's Hessian-free (batch 250, 6 CG iterations, damping floor 1e-2) fits the
training lines of spoken digits more closely than Adam but generalizes worse; this trains
the task's recognizer from the same initialization with other batch sizes and damping
floors and prints, per epoch, seconds, training loss and test label error rate.

  python benchmarks/hessian_free_ablation.py [--dataset NAME] default batch64-floor0.1 ...

Variants: default, floor1, batch1000, batch125, batch64, batch125-floor0.1,
batch64-floor0.1. Label error rates are deterministic; seconds are only comparable
between runs that had the machine to themselves.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from ctc_newton import training  # noqa: E402
from ctc_newton.datasets import get_task  # noqa: E402

VARIANTS = {
    "default": (250, {}),
    "floor1": (250, {"min_damping": 1.0}),
    "batch1000": (1000, {}),
    "batch125": (125, {}),
    "batch64": (64, {}),
    "batch125-floor0.1": (125, {"min_damping": 0.1}),
    "batch64-floor0.1": (64, {"min_damping": 0.1}),
}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dataset", default="spoken-digits")
parser.add_argument("variants", nargs="*", help=f"from {', '.join(VARIANTS)}")
args = parser.parse_args()
unknown = [v for v in args.variants if v not in VARIANTS]
if unknown:
    parser.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
args.variants = args.variants or ["default"]
task = get_task(args.dataset)
data = task.load(2000, 500, task.max_labels, 0)
base = dict(training.MINI_BATCH_SETTINGS["hessian-free"])
for variant in args.variants:
    batch, changes = VARIANTS[variant]
    training.MINI_BATCH_SETTINGS["hessian-free"] = {**base, **changes}
    _, rows = training.train_one(
        "hessian-free", data, task.epochs, batch, task.units, 0, 1e-2, dataset=args.dataset
    )
    for r in rows:
        print(
            f"| {variant} | {r['epoch']} | {r['seconds']:.1f} | {r['loss']:.4f} | "
            f"{r['test_label_error_rate']:.4f} |",
            flush=True,
        )
training.MINI_BATCH_SETTINGS["hessian-free"] = base
