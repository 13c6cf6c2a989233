"""Figures the command line, the examples and the notebooks draw (needs matplotlib:
``pip install 'ctc_newton[examples]'``)."""

from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

import numpy as np

if TYPE_CHECKING:  # the spectrum module loads TensorFlow; plotting alone does not
    from ctc_newton.curvature.spectrum import SpectralDensity


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "Plotting needs matplotlib: pip install 'ctc_newton[examples]'."
        ) from error
    return plt


def plot_histories(histories: Dict[str, List[Dict]], title: str = ""):
    """Training loss and test label error rate against wall-clock time and epochs.

    Args:
      histories: optimizer name -> the rows of `ctc_newton.training.train_one`.
      title: the figure's title.

    Returns:
      The matplotlib figure (2 x 2 axes).
    """
    plt = _pyplot()
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [
        ("seconds", "loss"),
        ("seconds", "test_label_error_rate"),
        ("epoch", "loss"),
        ("epoch", "test_label_error_rate"),
    ]
    for name, rows in histories.items():
        for ax, (x, y) in zip(axes.flat, panels):
            ax.plot([r[x] for r in rows], [r[y] for r in rows], marker="o", label=name)
    for ax, (x, y) in zip(axes.flat, panels):
        ax.set_xlabel("wall-clock seconds" if x == "seconds" else "epoch")
        ax.set_ylabel("training loss" if y == "loss" else "test label error rate")
        ax.grid(alpha=0.3)
        ax.legend()
    for ax in axes[:, 0]:
        ax.set_yscale("log")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_spectral_densities(
    densities: Dict[str, "SpectralDensity"], ax=None, grid: Optional[Sequence[float]] = None
):
    """Eigenvalue densities (`ctc_newton.curvature.SpectralDensity`) on one log-scale axis.

    Args:
      densities: label -> spectral density, e.g. ``{"Hessian": ..., "Gauss-Newton": ...}``.
      ax: axes to draw on; a new figure when None.
      grid: eigenvalues to evaluate at; default spans all nodes.

    Returns:
      The axes.
    """
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    if grid is None:
        low = min(float(d.nodes.min()) for d in densities.values())
        high = max(float(d.nodes.max()) for d in densities.values())
        pad = 0.05 * (high - low) + 1e-12
        points = np.linspace(low - pad, high + pad, 2000)
    else:
        points = np.asarray(grid, dtype=float)
    width = 0.01 * (points[-1] - points[0])
    for label, density in densities.items():
        ax.plot(points, np.maximum(density.density(points, width), 1e-12), label=label)
    ax.set_yscale("log")
    ax.set_ylim(bottom=1e-6)
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.legend()
    return ax
