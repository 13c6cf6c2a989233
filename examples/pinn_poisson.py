"""A physics-informed network: Adam, then L-BFGS or Levenberg-Marquardt, on the Poisson equation.

The problem: ``-(u_xx + u_yy) = 2 pi^2 sin(pi x) sin(pi y)`` on the unit square with
``u = 0`` on its boundary, whose solution is ``u = sin(pi x) sin(pi y)``. A tanh network
2-20-20-1 (float64, 501 weights) is trained on the PDE residual at interior collocation
points and on the boundary residual, full batch, the way PINN users do: Adam first, then
a second-order method to a much lower loss. Three second stages from the same Adam
result:

- ``minimize(loss, variables, method="lbfgs")``;
- ``minimize(CurvatureOracle.from_residuals(...), method="levenberg-marquardt")``, the
  residuals given as two weighted tensors (dense steps: 501 weights);
- scipy's ``L-BFGS-B`` on a ``tf.function`` value-and-gradient of a flat vector, the
  recipe users write by hand today.

Prints the loss and the relative L2 error against the exact solution after each stage,
and plots both against wall-clock time (``pinn_poisson.png``).

Run: python examples/pinn_poisson.py [--quick]   (about a minute; --quick: seconds)
``benchmarks/pinn.py`` runs the same comparison at a larger budget and commits its results.
"""

import argparse
import math
import os
import time
from typing import Callable, Dict, List, NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402
import tensorflow as tf  # noqa: E402

from ctc_newton import CurvatureOracle, minimize  # noqa: E402
from ctc_newton.curvature import flatten, unflatten  # noqa: E402

PI = math.pi


class Problem(NamedTuple):
    """The network, its residuals and loss, and the exact solution on a test grid."""

    net: keras.Model
    residuals: Callable[[], List[tf.Tensor]]  # [PDE residual, boundary residual]
    weights: List[float]  # the loss is 1/2 sum_k weights[k] |residuals[k]|^2
    loss: Callable[[], tf.Tensor]
    error: Callable[[], float]  # relative L2 error against the exact solution


def poisson_problem(interior: int = 400, boundary: int = 80, seed: int = 0) -> Problem:
    """The Poisson problem above with random interior points and an even boundary grid."""
    rng = np.random.default_rng(seed)
    inside = tf.constant(rng.uniform(0.0, 1.0, (interior, 2)))
    s = np.linspace(0.0, 1.0, boundary // 4, endpoint=False)
    edge = np.concatenate(
        [np.stack([s, 0 * s], 1), np.stack([1 + 0 * s, s], 1),
         np.stack([1 - s, 1 + 0 * s], 1), np.stack([0 * s, 1 - s], 1)]
    )  # fmt: skip
    edge = tf.constant(edge)
    grid = np.linspace(0.0, 1.0, 51)
    test = tf.constant(np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2))
    exact = tf.sin(PI * test[:, 0]) * tf.sin(PI * test[:, 1])
    source = 2 * PI**2 * tf.sin(PI * inside[:, 0]) * tf.sin(PI * inside[:, 1])

    keras.utils.set_random_seed(seed)
    net = keras.Sequential(
        [
            keras.Input((2,), dtype="float64"),
            keras.layers.Dense(20, activation="tanh", dtype="float64"),
            keras.layers.Dense(20, activation="tanh", dtype="float64"),
            keras.layers.Dense(1, dtype="float64"),
        ]
    )

    def residuals():
        with tf.GradientTape(persistent=True) as outer:
            outer.watch(inside)
            with tf.GradientTape() as inner:
                inner.watch(inside)
                u = net(inside)
            du = inner.gradient(u, inside)  # each point's u depends on that point only
            u_x, u_y = du[:, 0], du[:, 1]
        laplacian = outer.gradient(u_x, inside)[:, 0] + outer.gradient(u_y, inside)[:, 1]
        return [laplacian + source, tf.reshape(net(edge), [-1])]

    weights = [1.0 / interior, 1.0 / boundary]  # means of squares

    def loss():
        pde, edges = residuals()
        return 0.5 * (weights[0] * tf.reduce_sum(pde**2) + weights[1] * tf.reduce_sum(edges**2))

    def error():
        difference = tf.reshape(net(test), [-1]) - exact
        return float(tf.norm(difference) / tf.norm(exact))

    return Problem(net, residuals, weights, loss, error)


class Trace:
    """Loss and error against wall-clock time from a stage's start, as a stage runs."""

    def __init__(self, problem: Problem, start_seconds: float = 0.0):
        self.problem, self.offset = problem, start_seconds
        self.start = time.perf_counter()
        self.rows: List[Dict[str, float]] = []

    def record(self, loss: float) -> None:
        seconds = self.offset + time.perf_counter() - self.start
        self.rows.append(dict(seconds=seconds, loss=loss, error=self.problem.error()))


def adam_stage(problem: Problem, steps: int, learning_rate: float = 1e-3, every: int = 50):
    """Adam on the full batch, one compiled step per iteration; returns the `Trace`."""
    variables = problem.net.trainable_variables
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = problem.loss()
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))
        return value

    trace = Trace(problem)
    for i in range(steps):
        value = step()
        if (i + 1) % every == 0 or i + 1 == steps:
            trace.record(float(value))
    return trace


def lbfgs_stage(problem: Problem, iterations: int, start_seconds: float, every: int = 10):
    """``minimize(..., method="lbfgs")`` from the current weights; returns the `Trace`."""
    trace = Trace(problem, start_seconds)

    def watch(result):
        if result.nit % every == 0:
            trace.record(float(result.fun))

    result = minimize(
        problem.loss, problem.net.trainable_variables, method="lbfgs", maxiter=iterations,
        gtol=0.0, callback=watch,
    )  # fmt: skip
    trace.record(float(result.fun))
    return trace, result


def levenberg_marquardt_stage(problem: Problem, iterations: int, start_seconds: float):
    """``minimize`` with Levenberg-Marquardt on the weighted residuals; returns the `Trace`."""
    trace = Trace(problem, start_seconds)
    oracle = CurvatureOracle.from_residuals(
        problem.residuals, problem.net.trainable_variables, weights=problem.weights
    )
    result = minimize(
        oracle, method="levenberg-marquardt", maxiter=iterations, gtol=0.0,
        callback=lambda r: trace.record(float(r.fun)),
    )  # fmt: skip
    trace.record(float(result.fun))
    return trace, result


def scipy_stage(problem: Problem, iterations: int, start_seconds: float, every: int = 10):
    """scipy's L-BFGS-B on a ``tf.function`` value-and-gradient of a flat vector."""
    variables = problem.net.trainable_variables

    @tf.function
    def value_and_gradient(x):
        for variable, value in zip(variables, unflatten(x, variables)):
            variable.assign(value)
        with tf.GradientTape() as tape:
            value = problem.loss()
        return value, flatten(tape.gradient(value, variables))

    def fun(x):
        value, gradient = value_and_gradient(tf.constant(x))
        return float(value), gradient.numpy()

    trace = Trace(problem, start_seconds)
    count = [0]

    def watch(intermediate_result):
        count[0] += 1
        if count[0] % every == 0:
            trace.record(float(intermediate_result.fun))

    x0 = flatten(variables).numpy()
    result = scipy.optimize.minimize(
        fun, x0, jac=True, method="L-BFGS-B", callback=watch,
        options=dict(maxiter=iterations, maxfun=2 * iterations, ftol=0.0, gtol=0.0),
    )  # fmt: skip
    value_and_gradient(tf.constant(result.x))  # leave the weights at scipy's answer
    trace.record(float(result.fun))
    return trace, result


def run(adam_steps: int, second_iterations: int, lm_iterations: int) -> Dict[str, List[Dict]]:
    """Adam, then each second stage from Adam's weights: each run's rows (seconds counted
    from Adam's start)."""
    problem = poisson_problem()
    adam = adam_stage(problem, adam_steps)
    after_adam = [v.numpy() for v in problem.net.trainable_variables]
    offset = adam.rows[-1]["seconds"]
    runs = {"Adam": adam.rows}
    stages = {
        "Adam -> L-BFGS (ctc_newton)": lambda: lbfgs_stage(problem, second_iterations, offset),
        "Adam -> Levenberg-Marquardt (ctc_newton)": lambda: levenberg_marquardt_stage(
            problem, lm_iterations, offset
        ),
        "Adam -> scipy L-BFGS-B recipe": lambda: scipy_stage(problem, second_iterations, offset),
    }
    for name, stage in stages.items():
        for variable, value in zip(problem.net.trainable_variables, after_adam):
            variable.assign(value)
        trace, _ = stage()
        runs[name] = adam.rows + trace.rows
    return runs


def plot(runs: Dict[str, List[Dict]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, rows in runs.items():
        seconds = [r["seconds"] for r in rows]
        for ax, key in zip(axes, ["loss", "error"]):
            ax.semilogy(seconds, [r[key] for r in rows], label=name)
    axes[0].set(xlabel="wall-clock seconds", ylabel="loss (mean squared residuals / 2)")
    axes[1].set(xlabel="wall-clock seconds", ylabel="relative L2 error vs exact solution")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    figure.suptitle("Poisson PINN: Adam, then a second-order stage")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of seconds")
    args = parser.parse_args()
    sizes = (200, 50, 10) if args.quick else (2000, 1000, 100)
    runs = run(*sizes)
    for name, rows in runs.items():
        last = rows[-1]
        print(
            f"{name:>42}: loss {last['loss']:.2e}, error {last['error']:.2e} "
            f"after {last['seconds']:.1f} s"
        )
    plot(runs, "pinn_poisson.png")
    print("wrote pinn_poisson.png")


if __name__ == "__main__":
    main()
