"""Full-batch training of a small MLP: ctc_newton's minimize against what a user picks.

Problem (issue 13): a tanh MLP 2-64-64-1 (4,417 weights, float64) fitting a smooth 2-D
function on 4,096 points, mean squared error, full batch, the same start for everyone.
L-BFGS runs are compared per iteration, side by side in one process:

- ``minimize(loss, model.trainable_variables, method="lbfgs")`` (ctc_newton),
- scipy's ``L-BFGS-B`` on a ``tf.function`` value-and-gradient (the usual recipe),
- ``tfp.optimizer.lbfgs_minimize`` inside one ``tf.function``.

It also times a few iterations of the curvature methods (Gauss-Newton through
``from_outputs``, trust-ncg). Writes benchmarks/results/fullbatch.md.

Usage: python benchmarks/fullbatch.py [--iterations N]   (default 500, as in issue 13)
"""

import argparse
import collections
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from _timing import best_seconds, product_chain, provenance, write_results  # noqa: E402
from ctc_newton import CurvatureOracle  # noqa: E402
from ctc_newton.curvature import flatten, unflatten  # noqa: E402
from ctc_newton.optimizers import minimize  # noqa: E402


def problem():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4096, 2))
    y = np.sin(3 * x[:, :1]) * np.cos(2 * x[:, 1:]) + 0.5 * x[:, :1] * x[:, 1:]
    return tf.constant(x), tf.constant(y)


def model():
    keras.utils.set_random_seed(0)
    keras.config.set_floatx("float64")
    net = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(64, activation="tanh"),
            keras.layers.Dense(64, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )
    keras.config.set_floatx("float32")
    return net


def flat_value_and_gradient(net, x, y):
    """``flat weights -> (MSE, flat gradient)``, setting the network's weights."""
    variables = net.trainable_variables

    def value_and_gradient(flat):
        for v, value in zip(variables, unflatten(flat, variables)):
            v.assign(value)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((net(x) - y) ** 2)
        return loss, flatten(tape.gradient(loss, variables))

    return value_and_gradient


def run_ours(x, y, iterations):
    net = model()
    variables = net.trainable_variables
    result = minimize(
        lambda: tf.reduce_mean((net(x) - y) ** 2),
        variables,
        method="lbfgs",
        maxiter=iterations,
        gtol=0.0,
    )
    return result.nit, result.fun, result.nfev


def run_scipy(x, y, iterations):
    net = model()
    variables = net.trainable_variables
    value_and_gradient = tf.function(flat_value_and_gradient(net, x, y))

    def fun(w):
        value, gradient = value_and_gradient(tf.constant(w))
        return float(value), gradient.numpy()

    x0 = flatten(variables).numpy()
    out = scipy.optimize.minimize(
        fun, x0, jac=True, method="L-BFGS-B", options=dict(maxiter=iterations, gtol=0.0, ftol=0.0)
    )
    return out.nit, out.fun, out.nfev


def run_tfp(x, y, iterations):
    net = model()
    variables = net.trainable_variables
    value_and_gradient = flat_value_and_gradient(net, x, y)

    @tf.function
    def run(start):
        return tfp.optimizer.lbfgs_minimize(
            value_and_gradient, start, tolerance=0.0, max_iterations=iterations
        )

    out = run(flatten(variables))
    return int(out.num_iterations), float(out.objective_value), int(out.num_objective_evaluations)


def tape_oracle(net, x, y, method):
    """from_outputs (Gauss-Newton methods) or from_function (Hessian methods)."""
    variables = net.trainable_variables
    if method in ("gauss-newton", "hessian-free"):
        return CurvatureOracle.from_outputs(
            lambda: net(x), lambda out: tf.reduce_mean((out - y) ** 2), variables
        )
    return CurvatureOracle.from_function(lambda: tf.reduce_mean((net(x) - y) ** 2), variables)


def curvature_oracle(net, x, y, method):
    """The compiled oracle minimize() runs on by default."""
    return tape_oracle(net, x, y, method).compiled()


def instrument(oracle):
    """Counts the oracle's compiled calls by kind: value-and-gradient, value, solve."""
    counts = collections.Counter()
    call = oracle._call
    functions = oracle._functions
    kinds = {
        id(functions.value_and_gradient): "gradients",
        id(functions.value): "values",
        id(functions.evaluate_at): "values",
        id(functions.product): "products",
    }

    def counted(fn, *args):
        counts[kinds.get(id(fn), "solves")] += 1
        return call(fn, *args)

    oracle._call = counted
    return counts


def unit_costs(net, x, y, method, repeats=20):
    """Seconds for one compiled value-and-gradient, one value, one linearization
    (the forward pass a solve records) and one curvature product after it."""
    oracle = curvature_oracle(net, x, y, method)
    kind = "gauss_newton" if method in ("gauss-newton", "hessian-free") else "hessian"

    def seconds(fn):
        return best_seconds(fn, repeats)

    gradient = seconds(lambda: oracle.linearize().value_and_gradient())
    value = seconds(oracle.evaluate)
    chains = [product_chain(oracle._functions, k, kind) for k in (1, 21)]
    one, many = (seconds(lambda f=chain: oracle._call(f, ())) for chain in chains)
    product = (many - one) / 20
    return {
        "gradient": gradient,
        "value": value,
        "linearization": one - product,
        "product": product,
    }


def run_curvature(x, y, method, iterations):
    """``(iterations, final loss, first-call s, s per iteration, model s, counts, units)``.

    A first ``minimize(maxiter=1)`` traces; the timed run starts again from the same
    weights on the same (traced) oracle. The model is what the iterations' own
    gradients, evaluations, linearizations and products cost at the unit costs
    measured here; s per iteration / model - 1 is the overhead.
    """
    net = model()
    start_weights = [v.numpy() for v in net.trainable_variables]
    oracle = curvature_oracle(net, x, y, method)
    start = time.perf_counter()
    minimize(oracle, method=method, maxiter=1, gtol=0.0)
    first = time.perf_counter() - start
    for variable, value in zip(net.trainable_variables, start_weights):
        variable.assign(value)
    counts = instrument(oracle)
    oracle.num_curvature_products = 0
    start = time.perf_counter()
    result = minimize(oracle, method=method, maxiter=iterations, gtol=0.0)
    per_iteration_s = (time.perf_counter() - start) / max(result.nit, 1)
    counts = dict(counts, products=oracle.num_curvature_products)
    units = unit_costs(model(), x, y, method)
    per = {k: v / max(result.nit, 1) for k, v in counts.items()}
    modelled = (
        per.get("gradients", 0) * units["gradient"]
        + per.get("values", 0) * units["value"]
        + per.get("solves", 0) * units["linearization"]
        + per["products"] * units["product"]
    )
    return result.nit, result.fun, first, per_iteration_s, modelled, per, units


def run_eager(x, y, method, iterations):
    net = model()
    result = minimize(
        tape_oracle(net, x, y, method), method=method, maxiter=iterations, gtol=0.0, compiled=False
    )
    return result.nit, result.fun


def timed(fn, *args):
    start = time.perf_counter()
    nit, fun, *rest = fn(*args)
    return (nit, fun, time.perf_counter() - start, *rest)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--curvature-iterations", type=int, default=20)
    args = parser.parse_args()
    x, y = problem()
    rows = []
    for name, fn in [
        ("scipy L-BFGS-B + tf.function", run_scipy),
        ("tfp lbfgs_minimize in one tf.function", run_tfp),
        ("ctc_newton minimize(method='lbfgs')", run_ours),
    ]:
        rows.append((name,) + timed(fn, x, y, args.iterations))
    reference = rows[0][3] / max(rows[0][1], 1)  # scipy's seconds per iteration
    lines = [
        "# Full-batch MLP: ctc_newton's minimize against the usual recipes",
        "",
        provenance(scipy=scipy.__version__) + ". MLP 2-64-64-1 tanh, 4,417 weights, float64, "
        "4,096 points, MSE, same start; wall time includes tracing.",
        "",
        f"## L-BFGS, {args.iterations} iterations",
        "",
        "| run | iterations | evaluations | final loss | wall s | s / iteration | "
        "time per iteration vs scipy recipe |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, nit, fun, wall, nfev in rows:
        per = wall / max(nit, 1)
        lines.append(
            f"| {name} | {nit} | {nfev} | {fun:.3e} | {wall:.1f} | "
            f"{per * 1000:.1f} ms | {per / reference:.2f}x |"
        )
    lines += [
        "",
        f"## Curvature methods, {args.curvature_iterations} iterations",
        "",
        "Compiled (the default): each step's CG solve is one graph call. *Model*: what "
        "the iteration's own gradients, evaluations, linearizations and curvature "
        "products cost at the unit costs measured in this run (one compiled call "
        "each; a product after the linearization it shares); the overhead is steady "
        "time / model - 1. Eager: `compiled=False`, the previous default.",
        "",
        "| method | iterations | final loss | first call s (tracing) | s / iteration "
        "| model s / iteration | overhead | products / iteration | "
        "eager s / iteration |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    unit_rows = []
    for method in ("gauss-newton", "hessian-free", "trust-ncg", "newton-cg"):
        nit, fun, first, steady, modelled, per, units = run_curvature(
            x, y, method, args.curvature_iterations
        )
        eager = timed(run_eager, x, y, method, args.curvature_iterations)
        lines.append(
            f"| {method} | {nit} | {fun:.3e} | {first:.2f} | {steady * 1000:.1f} ms | "
            f"{modelled * 1000:.1f} ms | {steady / modelled - 1:+.0%} | "
            f"{per['products']:.1f} | {eager[2] / max(eager[0], 1) * 1000:.0f} ms |"
        )
        unit_rows.append((method, units))
    lines += [
        "",
        "Unit costs (ms): value-and-gradient, value, linearization, product after it.",
        "",
    ]
    for method, units in unit_rows:
        lines.append(f"- {method}: " + ", ".join(f"{k} {v * 1000:.2f}" for k, v in units.items()))
    write_results("fullbatch.md", lines)


if __name__ == "__main__":
    main()
