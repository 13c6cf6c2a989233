"""A physics-informed network, Adam then a second-order stage, against the scipy recipe.

The Poisson problem of ``examples/pinn_poisson.py`` (a tanh 2-20-20-1 network, float64,
501 weights; 400 interior and 80 boundary collocation points), in one process from one
initialization: 2,000 full-batch Adam steps, then from Adam's weights

- ``minimize(loss, variables, method="lbfgs")``, 2,000 iterations;
- ``minimize(CurvatureOracle.from_residuals(...), method="levenberg-marquardt")``,
  150 iterations (dense steps);
- scipy's ``L-BFGS-B`` on a ``tf.function`` value-and-gradient of a flat vector (what
  users write by hand), 2,000 iterations.

Reports the final loss and relative L2 error against the exact solution, and the
wall-clock seconds (tracing included, counted from Adam's start) at which each run first
reached a relative error of 1e-2, 1e-3 and 1e-4, with the ratio to the scipy recipe.
Writes benchmarks/results/pinn.md and pinn.png.

Usage: python benchmarks/pinn.py
"""

import math
import pathlib
import sys

import scipy

from _timing import provenance, write_results

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import pinn_poisson  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
THRESHOLDS = (1e-2, 1e-3, 1e-4)
RECIPE = "Adam -> scipy L-BFGS-B recipe"


def first_reached(rows, threshold):
    return next((r["seconds"] for r in rows if r["error"] <= threshold), math.inf)


def main():
    runs = pinn_poisson.run(adam_steps=2000, second_iterations=2000, lm_iterations=150)
    pinn_poisson.plot(runs, str(RESULTS / "pinn.png"))
    lines = [
        "# Poisson PINN: Adam, then L-BFGS or Levenberg-Marquardt, against the scipy recipe",
        "",
        provenance(scipy=scipy.__version__) + ".",
        "`python benchmarks/pinn.py`: the problem of `examples/pinn_poisson.py` (tanh "
        "2-20-20-1, float64, 501 weights, 400 interior + 80 boundary points); 2,000 Adam "
        "steps (learning rate 1e-3), then L-BFGS 2,000 iterations, Levenberg-Marquardt 150, "
        "scipy's L-BFGS-B 2,000, all from Adam's weights. Seconds from Adam's start, tracing "
        "included; the error is relative L2 against the exact solution on a 51 x 51 grid.",
        "",
        "| run | final loss | final error | seconds | "
        + " | ".join(f"seconds to error {t:g} (vs recipe)" for t in THRESHOLDS)
        + " |",
        "|---|---|---|---|" + "---|" * len(THRESHOLDS),
    ]
    recipe = [first_reached(runs[RECIPE], t) for t in THRESHOLDS]
    for name, rows in runs.items():
        last = rows[-1]
        cells = []
        for threshold, peer in zip(THRESHOLDS, recipe):
            seconds = first_reached(rows, threshold)
            if math.isinf(seconds):
                cells.append("not reached")
            elif math.isinf(peer):
                cells.append(f"{seconds:.1f} (recipe: not reached)")
            else:
                cells.append(f"{seconds:.1f} ({seconds / peer:.2f}x)")
        lines.append(
            f"| {name} | {last['loss']:.2e} | {last['error']:.2e} | {last['seconds']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "![loss and error against time](pinn.png)"]
    write_results("pinn.md", lines)


if __name__ == "__main__":
    main()
