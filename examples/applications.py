"""Speech or sensor streams end to end: Adam against Hessian-free from one initialization,
decoded test sequences, and the curvature spectrum of the trained model.

  python examples/applications.py --dataset spoken-digits   # FSDD speech, ~5 minutes
  python examples/applications.py --dataset activities      # smartwatch sensors, ~3 minutes

Needs the dataset's extra: pip install -e ".[examples,speech]" (or ``activities``).
``--quick`` runs a tiny budget (what the notebooks' tests run). Writes
``<dataset>_training.png`` and ``<dataset>_spectrum.png`` beside the working directory.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import ctc_newton  # noqa: E402
from ctc_newton.curvature import keras_oracle, spectral_density  # noqa: E402
from ctc_newton.datasets import get_task  # noqa: E402
from ctc_newton.plotting import plot_histories, plot_spectral_densities  # noqa: E402
from ctc_newton.recognizer import evaluate, examples  # noqa: E402
from ctc_newton.training import DEFAULT_BATCH, train_one  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument(
    "--dataset", default="spoken-digits", choices=["spoken-digits", "activities", "digit-lines"]
)
parser.add_argument("--quick", action="store_true", help="a tiny budget")
args = parser.parse_args()

task = get_task(args.dataset)
budget = (
    dict(train=96, test=32, epochs=2, units=8, steps=8)
    if args.quick
    else dict(train=2000, test=500, epochs=task.epochs, units=task.units, steps=40)
)
data = task.load(budget["train"], budget["test"], task.max_labels, 0)
print(
    f"{task.description}: {len(data.train.inputs)} training and {len(data.test.inputs)} "
    f"test sequences, up to {data.train.inputs.shape[1]} frames of {task.features} features"
)

# 1. Adam and Hessian-free from the same initial weights, logging each epoch.
histories, models = {}, {}
for name in ("adam", "hessian-free"):
    models[name], histories[name] = train_one(
        name,
        data,
        budget["epochs"],
        min(DEFAULT_BATCH[name], budget["train"]),
        budget["units"],
        seed=0,
        learning_rate=1e-2,
        dataset=args.dataset,
    )
    last = histories[name][-1]
    print(
        f"{name:>12}: test label error rate {last['test_label_error_rate']:.3f} "
        f"after {last['seconds']:.0f} s"
    )
plot_histories(histories, f"CTC {task.noun}").savefig(f"{args.dataset}_training.png", dpi=90)

# 2. What the Hessian-free model hears or sees in test sequences it never trained on.
rate, decoded = evaluate(models["hessian-free"], data.test)
print(f"Hessian-free, greedy decoding: test label error rate {rate:.3f}")
for row in examples(data.test, decoded, 5, task.alphabet):
    print(f"  truth {row['truth']}\n    got {row['decoded']}")

# 3. The curvature at the trained point: the exact Hessian is indefinite, the Gauss-Newton
# that Hessian-free uses is not (stochastic Lanczos quadrature, one product per step).
oracle = keras_oracle(
    models["hessian-free"], ctc_newton.CTCLoss(), data.train.inputs[:64], data.train.labels[:64]
)
densities = {
    kind: spectral_density(oracle, key, num_steps=budget["steps"], num_probes=2)
    for kind, key in (("Hessian", "hessian"), ("Gauss-Newton", "gauss_newton"))
}
for kind, density in densities.items():
    print(f"{kind:>12}: eigenvalues in [{density.nodes.min():.3g}, {density.nodes.max():.3g}]")
ax = plot_spectral_densities(densities)
ax.set_title(f"Curvature spectrum of the trained {task.noun} recognizer ({oracle.size} weights)")
ax.figure.savefig(f"{args.dataset}_spectrum.png", dpi=90)
print(f"wrote {args.dataset}_training.png and {args.dataset}_spectrum.png")
