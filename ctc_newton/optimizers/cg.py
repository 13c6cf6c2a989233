"""Conjugate-gradient solvers for Newton-type subproblems, over flat vectors.

Each takes ``apply(v)``, the curvature matrix times a flat vector, and works with
any float dtype. A non-finite curvature product stops the solver and is reported
(``CGResult.nonfinite``) so the optimizer can reject the step and raise damping.
"""

import math
from typing import Callable, List, NamedTuple, Optional, Tuple

import tensorflow as tf

Apply = Callable[[tf.Tensor], tf.Tensor]


def _dot(a, b):
    return tf.reduce_sum(a * b)


def _finite(x) -> bool:
    return bool(tf.reduce_all(tf.math.is_finite(x)))


class CGResult(NamedTuple):
    """A CG solve's outcome.

    Attributes:
      step: the chosen solution.
      iterations: number of curvature products used.
      hits_boundary: (Steihaug) the step lies on the trust-region boundary.
      negative_curvature: a direction with ``d^T A d <= 0`` was met.
      nonfinite: a curvature product was NaN or inf (the step is then unusable).
      iterates: (Martens) stored ``(iteration, x_i, phi(x_i))`` for backtracking.
    """

    step: tf.Tensor
    iterations: int
    hits_boundary: bool = False
    negative_curvature: bool = False
    nonfinite: bool = False
    iterates: Tuple = ()


def steihaug(apply: Apply, gradient: tf.Tensor, radius: float,
             max_iterations: int) -> CGResult:
    """Steihaug-Toint CG for ``min g^T p + 1/2 p^T A p`` s.t. ``|p| <= radius``.

    Follows scipy's trust-ncg subproblem: tolerance ``min(0.5, sqrt(|g|)) |g|``;
    on negative curvature it goes to the boundary point with the lower model
    value; when a step leaves the region it stops on the boundary.
    """
    g_norm = float(tf.norm(gradient))
    tolerance = min(0.5, math.sqrt(g_norm)) * g_norm
    z = tf.zeros_like(gradient)
    if g_norm == 0 or g_norm < tolerance:  # a zero gradient: the zero step solves it
        return CGResult(z, 0)
    r, d = gradient, -gradient

    def model(p):
        return float(_dot(gradient, p) + 0.5 * _dot(p, apply(p)))

    for i in range(max_iterations):
        bd = apply(d)
        if not _finite(bd):
            return CGResult(z, i + 1, nonfinite=True)
        d_bd = float(_dot(d, bd))
        if d_bd <= 0:
            ta, tb = _boundary(z, d, radius)
            candidates = [z + ta * d, z + tb * d]
            values = [model(p) for p in candidates]
            best = candidates[int(values[1] < values[0])]
            return CGResult(best, i + 1, hits_boundary=True, negative_curvature=True)
        r_squared = float(_dot(r, r))
        alpha = r_squared / d_bd
        z_next = z + alpha * d
        if float(tf.norm(z_next)) >= radius:
            _, tb = _boundary(z, d, radius)
            return CGResult(z + tb * d, i + 1, hits_boundary=True)
        r_next = r + alpha * bd
        r_next_squared = float(_dot(r_next, r_next))
        if math.sqrt(r_next_squared) < tolerance:
            return CGResult(z_next, i + 1)
        d = -r_next + (r_next_squared / r_squared) * d
        z, r = z_next, r_next
    return CGResult(z, max_iterations)


def _boundary(z, d, radius):
    """The two ``t`` with ``|z + t d| = radius``."""
    a = float(_dot(d, d))
    b = 2 * float(_dot(z, d))
    c = float(_dot(z, z)) - radius ** 2
    root = math.sqrt(max(b * b - 4 * a * c, 0.0))
    aux = b + math.copysign(root, b)
    return sorted([-aux / (2 * a), -2 * c / aux if aux != 0 else 0.0])


def truncated(apply: Apply, gradient: tf.Tensor, max_iterations: int,
              curvature_epsilon: float) -> CGResult:
    """scipy Newton-CG's inner solve of ``A p = -g``.

    Forcing term ``eta = min(0.5, sqrt(|g|_1))``; stops when ``|r|_1 <= eta |g|_1``,
    on non-positive curvature (steepest descent if met at the first iteration).
    """
    g_l1 = float(tf.reduce_sum(tf.abs(gradient)))
    termination = min(0.5, math.sqrt(g_l1)) * g_l1
    x = tf.zeros_like(gradient)
    r = gradient
    p = -r
    r_squared = float(_dot(r, r))
    for i in range(max_iterations):
        if float(tf.reduce_sum(tf.abs(r))) <= termination:
            return CGResult(x, i)
        ap = apply(p)
        if not _finite(ap):
            return CGResult(x, i + 1, nonfinite=True)
        curvature = float(_dot(p, ap))
        if 0 <= curvature <= curvature_epsilon:
            if i == 0:  # no curvature along -g: steepest descent, not a zero step
                x = -gradient
            return CGResult(x, i + 1)
        if curvature < 0:
            if i == 0:
                x = (r_squared / -curvature) * -gradient
            return CGResult(x, i + 1, negative_curvature=True)
        alpha = r_squared / curvature
        x = x + alpha * p
        r = r + alpha * ap
        r_next_squared = float(_dot(r, r))
        p = -r + (r_next_squared / r_squared) * p
        r_squared = r_next_squared
    return CGResult(x, max_iterations)


def backtracking_schedule(max_iterations: int) -> List[int]:
    """Martens' CG iterates kept for backtracking: ``ceil(1.3^j)``, de-duplicated."""
    kept, j = [], 0
    while True:
        i = math.ceil(1.3 ** j)
        if i > max_iterations:
            return kept
        if not kept or kept[-1] != i:
            kept.append(i)
        j += 1


def martens_should_stop(i: int, phis: List[float], epsilon: float = 5e-4) -> bool:
    """Martens' (2010, section 4.4) relative-progress rule for CG on a quadratic.

    Stop at iteration ``i`` when ``i > k``, ``phi_i < 0`` and
    ``(phi_i - phi_{i-k}) / phi_i < k * epsilon`` with ``k = max(10, 0.1 i)``.
    ``phis[j]`` is ``phi(x_j)``, ``phis[0] = phi(x_0)``.
    """
    k = max(10, int(0.1 * i))
    if i <= k or phis[i] >= 0:
        return False
    return (phis[i] - phis[i - k]) / phis[i] < k * epsilon


def martens(apply: Apply, b: tf.Tensor, x0: tf.Tensor, max_iterations: int,
            preconditioner: Optional[tf.Tensor] = None, epsilon: float = 5e-4,
            tolerance: float = 0.0) -> CGResult:
    """Preconditioned CG for ``A x = b`` with Martens' stopping rule and iterate storage.

    Args:
      apply: ``v -> A v`` (A positive definite, e.g. damped Gauss-Newton).
      b: the right-hand side (``-gradient``).
      x0: the warm start.
      max_iterations: cap on iterations (Martens: 250).
      preconditioner: diagonal ``M`` (the solver applies ``M^-1``), or None.
      epsilon: the stopping rule's tolerance.
      tolerance: also stop when ``|r| <= tolerance |b|`` (0: never).

    Returns:
      A `CGResult` whose ``iterates`` hold ``(i, x_i, phi(x_i))`` at
      ``i = ceil(1.3^j)`` and at the last iteration.
    """
    def phi(x, r):  # 1/2 x^T A x - b^T x with r = A x - b
        return 0.5 * float(_dot(x, r - b))

    x = x0
    ax = apply(x)
    if not _finite(ax):
        return CGResult(x0, 1, nonfinite=True)
    r = ax - b
    y = r / preconditioner if preconditioner is not None else r
    p = -y
    r_y = float(_dot(r, y))
    phis = [phi(x, r)]
    b_norm = float(tf.norm(b))
    keep = set(backtracking_schedule(max_iterations))
    iterates = []
    for i in range(1, max_iterations + 1):
        ap = apply(p)
        if not _finite(ap):
            return CGResult(x, i + 1, nonfinite=True, iterates=tuple(iterates))
        curvature = float(_dot(p, ap))
        if curvature <= 0:
            return CGResult(x, i + 1, negative_curvature=True, iterates=tuple(iterates))
        alpha = r_y / curvature
        x = x + alpha * p
        r = r + alpha * ap
        y = r / preconditioner if preconditioner is not None else r
        r_y_next = float(_dot(r, y))
        p = -y + (r_y_next / r_y) * p
        r_y = r_y_next
        phis.append(phi(x, r))
        stop = (martens_should_stop(i, phis, epsilon) or r_y == 0.0
                or float(tf.norm(r)) <= tolerance * b_norm)
        if i in keep or stop or i == max_iterations:
            iterates.append((i, x, phis[-1]))
        if stop:
            return CGResult(x, i + 1, iterates=tuple(iterates))
    return CGResult(x, max_iterations + 1, iterates=tuple(iterates))
