"""Where the time of a second-order step in ``model.fit`` goes (digit-lines recognizer).

Each optimizer as ``ctc-newton train`` configures it trains the digit-lines
recognizer for a few batches; every compiled oracle call is timed by kind
(value, gradient and the model outputs the metrics use, in one call; trial
evaluations; squared gradients; the CG solve). "Other" is the host's share:
the optimizer's Python, the metrics update (one graph call) and Keras' loop.
Inside a solve, the curvature products are modelled at the per-product cost
measured in this run on the same batch (a compiled chain of k products at one
linearization, k = 1 and 21); the rest of the solve is its
linearization (one forward and backward pass) and CG bookkeeping. Writes
benchmarks/results/fit_step_breakdown.md.

Usage: python benchmarks/fit_step_breakdown.py [--steps N]
"""

import argparse
import collections
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from _timing import best_seconds, product_chain, provenance, write_results  # noqa: E402
from ctc_newton import CTCLoss  # noqa: E402
from ctc_newton.training import DEFAULT_BATCH, make_optimizer  # noqa: E402
from ctc_newton.curvature.compiled import KerasCurvature  # noqa: E402
from ctc_newton.curvature.graph import GraphOracle  # noqa: E402
from ctc_newton.datasets import load_digit_lines  # noqa: E402
from ctc_newton.recognizer import build_recognizer  # noqa: E402

KINDS = ("value_and_gradient", "value", "evaluate_at", "squared_gradients", "solve")


class Timer(keras.callbacks.Callback):
    """Wall time of each training batch, and the oracle time inside it by kind."""

    def __init__(self, spent):
        super().__init__()
        self.spent = spent
        self.steps = []

    def on_train_batch_begin(self, batch, logs=None):
        self.spent.clear()
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        step = dict(
            self.spent,
            total=time.perf_counter() - self.start,
            cg_iterations=float((logs or {}).get("cg_iterations", 0)),
        )
        self.steps.append(step)


def timed_calls(spent):
    """Wraps GraphOracle._call to add each call's seconds to ``spent[kind]``."""
    original = GraphOracle._call

    def call(oracle, fn, *args):
        functions = oracle._functions
        kind = next((k for k in KINDS[:-1] if getattr(functions, k, None) is fn), "solve")
        start = time.perf_counter()
        try:
            return original(oracle, fn, *args)
        finally:
            spent[kind] += time.perf_counter() - start

    GraphOracle._call = call
    return original


def product_seconds(model, x, y, repeats=10):
    """Seconds per Gauss-Newton product after the linearization it shares."""
    functions = KerasCurvature.get(model, CTCLoss())

    def seconds(k):
        chain = product_chain(functions, k)
        return best_seconds(lambda: chain((x, y, None), ()), repeats, trials=3)

    one, many = seconds(1), seconds(21)
    return (many - one) / 20


def breakdown(name, data, steps):
    batch = DEFAULT_BATCH[name]
    model = build_recognizer(seed=0)
    model.compile(optimizer=make_optimizer(name), loss=CTCLoss())
    spent = collections.Counter()
    timer = Timer(spent)
    original = timed_calls(spent)
    try:
        count = (steps + 2) * batch  # two warm-up steps trace
        model.fit(
            data.train.inputs[:count],
            data.train.labels[:count],
            batch_size=batch,
            epochs=1,
            verbose=0,
            callbacks=[timer],
            shuffle=False,
        )
    finally:
        GraphOracle._call = original
    product = product_seconds(
        model, tf.constant(data.train.inputs[:batch]), tf.constant(data.train.labels[:batch])
    )
    measured = timer.steps[2:]
    mean = {
        k: float(np.mean([s.get(k, 0.0) for s in measured]))
        for k in KINDS + ("total", "cg_iterations")
    }
    # Each CG iteration is one product; Martens' CG does one more at its start.
    products = (mean["cg_iterations"]) * product
    return batch, mean, product, products


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    data = load_digit_lines()
    lines = [
        "# Second-order steps in model.fit: where the time goes",
        "",
        provenance() + ". Digit-lines recognizer (ctc_newton.recognizer, bidirectional "
        "GRU 32), each "
        "optimizer as `ctc-newton train` configures it, mean over "
        f"{args.steps} batches after two warm-up batches. Milliseconds per step.",
        "",
        "| optimizer | batch | step | products (modelled) | solve: linearization + CG "
        "| value+gradient+outputs | trial evaluations | squared gradients "
        "| other (host) | outside products |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("hessian-free", "gauss-newton", "trust-ncg"):
        batch, mean, product, products = breakdown(name, data, args.steps)
        other = mean["total"] - sum(mean[k] for k in KINDS)
        ms = {k: v * 1000 for k, v in mean.items()}
        lines.append(
            f"| {name} | {batch} | {ms['total']:.0f} | {products * 1000:.0f} "
            f"({mean['cg_iterations']:.1f} x {product * 1000:.1f}) | "
            f"{(mean['solve'] - products) * 1000:.0f} | {ms['value_and_gradient']:.0f} | "
            f"{ms['value'] + ms['evaluate_at']:.0f} | "
            f"{ms['squared_gradients']:.0f} | "
            f"{other * 1000:.0f} | {1 - products / mean['total']:.0%} |"
        )
    write_results("fit_step_breakdown.md", lines)


if __name__ == "__main__":
    main()
