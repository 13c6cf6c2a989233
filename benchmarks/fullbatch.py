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
import datetime
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from ctc_newton import CurvatureOracle  # noqa: E402
from ctc_newton.curvature import flatten, unflatten  # noqa: E402
from ctc_newton.optimizers import minimize  # noqa: E402


def problem():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4096, 2))
    y = (np.sin(3 * x[:, :1]) * np.cos(2 * x[:, 1:]) + 0.5 * x[:, :1] * x[:, 1:])
    return tf.constant(x), tf.constant(y)


def model():
    keras.utils.set_random_seed(0)
    keras.config.set_floatx("float64")
    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(64, activation="tanh"),
                            keras.layers.Dense(64, activation="tanh"), keras.layers.Dense(1)])
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
    result = minimize(lambda: tf.reduce_mean((net(x) - y) ** 2), variables, method="lbfgs",
                      maxiter=iterations, gtol=0.0)
    return result.nit, result.fun, result.nfev


def run_scipy(x, y, iterations):
    net = model()
    variables = net.trainable_variables
    value_and_gradient = tf.function(flat_value_and_gradient(net, x, y))

    def fun(w):
        value, gradient = value_and_gradient(tf.constant(w))
        return float(value), gradient.numpy()

    x0 = flatten(variables).numpy()
    out = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B",
                                  options=dict(maxiter=iterations, gtol=0.0, ftol=0.0))
    return out.nit, out.fun, out.nfev


def run_tfp(x, y, iterations):
    net = model()
    variables = net.trainable_variables
    value_and_gradient = flat_value_and_gradient(net, x, y)

    @tf.function
    def run(start):
        return tfp.optimizer.lbfgs_minimize(value_and_gradient, start, tolerance=0.0,
                                            max_iterations=iterations)

    out = run(flatten(variables))
    return int(out.num_iterations), float(out.objective_value), int(out.num_objective_evaluations)


def run_curvature(x, y, method, iterations):
    net = model()
    variables = net.trainable_variables
    if method == "gauss-newton":
        oracle = CurvatureOracle.from_outputs(lambda: net(x),
                                              lambda out: tf.reduce_mean((out - y) ** 2),
                                              variables)
        result = minimize(oracle, method=method, maxiter=iterations, gtol=0.0)
    else:
        result = minimize(lambda: tf.reduce_mean((net(x) - y) ** 2), variables, method=method,
                          maxiter=iterations, gtol=0.0)
    return result.nit, result.fun


def timed(fn, *args):
    start = time.perf_counter()
    nit, fun, *rest = fn(*args)
    return (nit, fun, time.perf_counter() - start, *rest)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    args = parser.parse_args()
    x, y = problem()
    rows = []
    for name, fn in [("scipy L-BFGS-B + tf.function", run_scipy),
                     ("tfp lbfgs_minimize in one tf.function", run_tfp),
                     ("ctc_newton minimize(method='lbfgs')", run_ours)]:
        rows.append((name,) + timed(fn, x, y, args.iterations))
    reference = rows[0][3] / max(rows[0][1], 1)  # scipy's seconds per iteration
    lines = ["# Full-batch MLP: ctc_newton's minimize against the usual recipes", "",
             f"Date: {datetime.datetime.now().isoformat(timespec='minutes')}; "
             f"{platform.machine()}, {os.cpu_count()} cores; TensorFlow {tf.__version__}, "
             f"scipy {scipy.__version__}. MLP 2-64-64-1 tanh, 4,417 weights, float64, "
             "4,096 points, MSE, same start; wall time includes tracing.", "",
             f"## L-BFGS, {args.iterations} iterations", "",
             "| run | iterations | evaluations | final loss | wall s | s / iteration | "
             "time per iteration vs scipy recipe |",
             "|---|---|---|---|---|---|---|"]
    for name, nit, fun, wall, nfev in rows:
        per = wall / max(nit, 1)
        lines.append(f"| {name} | {nit} | {nfev} | {fun:.3e} | {wall:.1f} | "
                     f"{per * 1000:.1f} ms | {per / reference:.2f}x |")
    curvature = [(method,) + timed(run_curvature, x, y, method, 10)
                 for method in ("gauss-newton", "trust-ncg")]
    lines += ["", "## Curvature methods, 10 iterations", "",
              "| method | iterations | final loss | wall s | s / iteration |", "|---|---|---|---|---|"]
    for name, nit, fun, wall in curvature:
        lines.append(f"| {name} | {nit} | {fun:.3e} | {wall:.1f} | {wall / max(nit, 1):.2f} |")
    text = "\n".join(lines)
    print(text)
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "results", "fullbatch.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
