"""The eigenvalue density of a curvature matrix by stochastic Lanczos quadrature.

For a random unit probe ``v``, ``m`` Lanczos steps on ``A`` give a tridiagonal ``T`` whose
eigenvalues ``theta_i`` (Ritz values) and squared first eigenvector components ``tau_i``
form a quadrature rule: ``sum_i tau_i f(theta_i) ~= v^T f(A) v``, whose expectation over
``v`` is ``tr f(A) / n``. Smoothing the nodes with a Gaussian gives the spectral density
(Lin, Saad and Yang 2016; Ghorbani, Krishnan and Xiao 2019 for neural networks). Each
step costs one curvature product; no matrix is formed.
"""

from typing import NamedTuple, Optional

import numpy as np

from ctc_newton.curvature.base import Oracle


class SpectralDensity(NamedTuple):
    """Quadrature nodes and weights of each probe.

    Attributes:
      nodes: ``[probes, steps]`` Ritz values (eigenvalue estimates; the extremes converge
        first).
      weights: ``[probes, steps]`` quadrature weights; each row sums to 1.
    """

    nodes: np.ndarray
    weights: np.ndarray

    def density(self, grid: np.ndarray, sigma: Optional[float] = None) -> np.ndarray:
        """The density on ``grid``: Gaussians of width ``sigma`` at the nodes, averaged over
        probes (integrates to about 1). Default ``sigma``: 1% of the nodes' range."""
        if sigma is None:
            sigma = max(0.01 * float(np.ptp(self.nodes)), 1e-12)
        grid = np.asarray(grid, np.float64)[:, None]
        nodes, weights = self.nodes.reshape(-1), self.weights.reshape(-1)
        bumps = np.exp(-0.5 * ((grid - nodes) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        return bumps @ weights / len(self.nodes)


def _lanczos(matvec, probe: np.ndarray, steps: int):
    """``(alpha, beta)`` of the tridiagonal, with full reorthogonalization (the basis
    is kept: ``steps`` vectors of the parameter count)."""
    basis = [probe / np.linalg.norm(probe)]
    alpha, beta = [], []
    for j in range(steps):
        w = matvec(basis[j])
        alpha.append(float(basis[j] @ w))
        stacked = np.stack(basis)
        for _ in range(2):  # twice is enough (Giraud et al. 2005)
            w = w - stacked.T @ (stacked @ w)
        norm = float(np.linalg.norm(w))
        if j == steps - 1 or norm <= 1e-10 * max(abs(alpha[-1]), 1.0):
            break  # an invariant subspace: the rule is exact
        beta.append(norm)
        basis.append(w / norm)
    return np.array(alpha), np.array(beta)


def spectral_density(
    oracle: Oracle,
    kind: str = "gauss_newton",
    num_steps: int = 40,
    num_probes: int = 1,
    seed: int = 0,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature of the oracle's Hessian or Gauss-Newton at its point.

    Args:
      oracle: any `Oracle` (a compiled one makes each product a graph call).
      kind: ``"hessian"`` or ``"gauss_newton"``.
      num_steps: Lanczos steps (curvature products) per probe; capped at the size.
      num_probes: independent Rademacher probes.
      seed: seed for the probes.

    Returns:
      A `SpectralDensity` (rows padded with zero weight when Lanczos stops early).

    Raises:
      ValueError: for ``num_steps`` or ``num_probes`` below 1, or an unknown ``kind``.
    """
    if num_steps < 1 or num_probes < 1:
        raise ValueError(
            f"`num_steps` and `num_probes` must be >= 1, got {num_steps} and {num_probes}."
        )
    operator = oracle.as_scipy_linear_operator(kind)
    steps = min(num_steps, oracle.size)
    rng = np.random.default_rng(seed)
    nodes = np.zeros((num_probes, steps))
    weights = np.zeros((num_probes, steps))
    for p in range(num_probes):
        probe = rng.choice([-1.0, 1.0], size=oracle.size)
        alpha, beta = _lanczos(operator.matvec, probe, steps)
        theta, vectors = np.linalg.eigh(np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1))
        nodes[p, : len(theta)] = theta
        weights[p, : len(theta)] = vectors[0] ** 2
        nodes[p, len(theta) :] = theta[-1]
    return SpectralDensity(nodes, weights)
