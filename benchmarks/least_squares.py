"""Levenberg-Marquardt: ctc_newton's minimize against scipy's MINPACK ``lm``.

Two nonlinear least-squares problems, float64, same start, in one process:

- a curve fit, ``y = a exp(-b t) + c`` on 40 noisy points (3 parameters);
- a tanh MLP 1-20-20-1 (481 parameters) fitting ``sin(3 t) + 0.3 t`` on 512 points,
  the residuals of its predictions.

scipy gets what a user would write for it: ``least_squares(method="lm")`` on a
``tf.function`` residual and a ``tf.function`` Jacobian (``tape.jacobian``).
ctc_newton gets ``minimize(CurvatureOracle.from_residuals(...),
method="levenberg-marquardt")`` (dense steps: both problems are below
``dense_limit``). Both stop at tolerances of 1e-12 or after 40 s; the table gives
the time each first reached a cost of 1e-4, 1e-6 and 1e-8.
Writes benchmarks/results/least_squares.md.

Usage: python benchmarks/least_squares.py
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize  # noqa: E402
import tensorflow as tf  # noqa: E402

from _timing import provenance, write_results  # noqa: E402
from ctc_newton import CurvatureOracle, minimize  # noqa: E402
from ctc_newton.curvature import flatten, unflatten  # noqa: E402


def curve_fit():
    rng = np.random.default_rng(0)
    t = tf.constant(np.linspace(0, 4, 40))
    y = 2.5 * tf.exp(-1.3 * t) + 0.5 + 0.02 * rng.standard_normal(40)
    p = tf.Variable([1.0, 0.5, 0.0], dtype=tf.float64)
    return (lambda: p[0] * tf.exp(-p[1] * t) + p[2] - y), [p]


def mlp_fit():
    t = tf.constant(np.linspace(-2, 2, 512)[:, None])
    y = tf.sin(3 * t) + 0.3 * t
    keras.utils.set_random_seed(0)
    keras.config.set_floatx("float64")
    net = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(20, activation="tanh"),
            keras.layers.Dense(20, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )
    keras.config.set_floatx("float32")
    return (lambda: tf.reshape(net(t) - y, [-1])), net.trainable_variables


SECONDS = 40.0  # each run's time budget
TARGETS = (1e-4, 1e-6, 1e-8)


class OutOfTime(Exception):
    pass


def run_ours(make):
    residuals, variables = make()
    trace = []
    start = time.perf_counter()

    def watch(state):
        trace.append((time.perf_counter() - start, state.fun))
        return trace[-1][0] > SECONDS

    result = minimize(
        CurvatureOracle.from_residuals(residuals, variables),
        method="levenberg-marquardt",
        gtol=1e-12,
        maxiter=100000,
        callback=watch,
    )
    return dict(
        seconds=time.perf_counter() - start,
        cost=result.fun,
        iterations=result.nit,
        message=result.message,
        trace=trace,
    )


def run_scipy(make):
    residuals, variables = make()
    trace = []

    def assign(flat):
        for v, value in zip(variables, unflatten(tf.constant(flat), variables)):
            v.assign(value)

    @tf.function
    def residual_values():
        return residuals()

    @tf.function
    def jacobian():
        with tf.GradientTape() as tape:
            r = residuals()
        rows = tf.shape(r)[0]
        return tf.concat([tf.reshape(j, [rows, -1]) for j in tape.jacobian(r, variables)], 1)

    def fun(w):
        assign(w)
        r = residual_values().numpy()
        trace.append((time.perf_counter() - start, 0.5 * float(r @ r)))
        if trace[-1][0] > SECONDS:
            raise OutOfTime
        return r

    def jac(w):
        assign(w)
        return jacobian().numpy()

    start = time.perf_counter()
    try:
        result = scipy.optimize.least_squares(
            fun,
            flatten(variables).numpy(),
            jac=jac,
            method="lm",
            xtol=1e-12,
            ftol=1e-12,
            gtol=1e-12,
            max_nfev=100000,
        )
        cost, iterations, message = result.cost, result.njev, result.message
    except OutOfTime:
        cost, iterations, message = min(c for _, c in trace), None, "time budget spent"
    return dict(
        seconds=time.perf_counter() - start,
        cost=cost,
        iterations=iterations,
        message=message,
        trace=trace,
    )


def time_to(trace, target):
    return next((f"{t:.2f}" for t, cost in trace if cost <= target), "-")


def main():
    lines = [
        "# Levenberg-Marquardt: minimize against scipy's MINPACK lm",
        "",
        provenance(scipy=scipy.__version__) + ". float64, same start; wall time includes "
        "tracing. "
        "scipy: least_squares(method='lm') on tf.function residuals and Jacobian "
        "(iterations = Jacobian evaluations). ours: minimize(from_residuals(...), "
        "method='levenberg-marquardt'), dense steps. Each run stops at tolerances "
        f"of 1e-12 or after {SECONDS:.0f} s.",
        "",
        "| problem | parameters | run | final cost 1/2 r^2 | iterations | wall s | "
        + " | ".join(f"s to cost {t:g}" for t in TARGETS)
        + " | stop |",
        "|---|---|---|---|---|---|" + "---|" * len(TARGETS) + "---|",
    ]
    for name, make, size in (("curve fit", curve_fit, 3), ("MLP 1-20-20-1", mlp_fit, 481)):
        theirs, ours = run_scipy(make), run_ours(make)
        for label, row in (("scipy lm", theirs), ("ctc_newton", ours)):
            reached = " | ".join(time_to(row["trace"], t) for t in TARGETS)
            lines.append(
                f"| {name} | {size} | {label} | {row['cost']:.6e} | "
                f"{row['iterations'] or '-'} | {row['seconds']:.2f} | {reached} | "
                f"{row['message']} |"
            )
    write_results("least_squares.md", lines)


if __name__ == "__main__":
    main()
