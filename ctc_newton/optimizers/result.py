"""Results in the style of scipy's ``OptimizeResult``."""

from typing import Any


class OptimizeResult(dict):
    """The outcome of `minimize`, a dict with attribute access (like scipy's).

    Attributes:
      x: the solution (list of arrays shaped like the variables, or a flat array when
        the problem was given as a flat ``x0``).
      fun: the loss at ``x``.
      jac: the gradient at ``x`` (same structure as ``x``).
      nit: number of iterations.
      nfev, njev, nhev: numbers of function, gradient and curvature-product evaluations.
      success: whether a convergence criterion was met.
      status: 0 converged, 1 iteration limit, 2 other failure.
      message: why it stopped.
      history: one dict per iteration (value, gradient_norm, damping or radius,
        cg_iterations, step_size, rho, accepted, note).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(name) from error

    __setattr__ = dict.__setitem__
    __delattr__ = dict.__delitem__

    def __repr__(self) -> str:
        keys = ["message", "success", "status", "fun", "nit", "nfev", "njev", "nhev"]
        return "\n".join(f"{k:>8}: {self[k]!r}" for k in keys if k in self)
