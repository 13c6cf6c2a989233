"""Conjugate-gradient solvers for Newton-type subproblems, over flat vectors.

Each takes ``apply(v)``, the curvature matrix times a flat vector, and works with
any float dtype. They are written in TensorFlow ops with ``tf.while_loop``, so the
same code runs eagerly (one host sync per iteration) or traced into a graph with
the curvature products (`ctc_newton.curvature.GraphOracle.solve`: the whole solve
is one call). A non-finite curvature product stops the solver and is reported
(``CGResult.nonfinite``) so the optimizer can reject the step and raise damping.
"""

import math
from typing import Callable, List, NamedTuple, Tuple, Union

import tensorflow as tf

Apply = Callable[[tf.Tensor], tf.Tensor]


def _dot(a, b):
    return tf.reduce_sum(a * b)


def _finite(x):
    return tf.reduce_all(tf.math.is_finite(x))


class CGResult(NamedTuple):
    """A CG solve's outcome (tensors: read them with ``int``/``bool``/``float``).

    Attributes:
      step: the chosen solution.
      iterations: number of curvature products used.
      hits_boundary: (Steihaug) the step lies on the trust-region boundary.
      negative_curvature: a direction with ``d^T A d <= 0`` was met.
      nonfinite: a curvature product was NaN or inf (the step is then unusable).
      model_value: the quadratic model at ``step``: ``g^T p + 1/2 p^T A p``
        (Steihaug), ``phi(step)`` (Martens); computed without another product.
      kept_iterations, kept_steps, kept_values, num_kept: (Martens) the iterates
        stored for backtracking, ``(i, x_i, phi(x_i))`` in the first
        ``num_kept`` rows; see `iterates`.
    """

    step: tf.Tensor
    iterations: tf.Tensor
    hits_boundary: tf.Tensor
    negative_curvature: tf.Tensor
    nonfinite: tf.Tensor
    model_value: tf.Tensor
    kept_iterations: tf.Tensor = None
    kept_steps: tf.Tensor = None
    kept_values: tf.Tensor = None
    num_kept: tf.Tensor = None

    def iterates(self) -> Tuple[Tuple[int, tf.Tensor, float], ...]:
        """(Eager) Martens' stored ``(i, x_i, phi(x_i))``, oldest first."""
        if self.num_kept is None:
            return ()
        return tuple(
            (int(self.kept_iterations[j]), self.kept_steps[j], float(self.kept_values[j]))
            for j in range(int(self.num_kept))
        )


# Traced with an iteration cap up to this, a solve is straight-line code instead of a
# tf.while_loop: curvature products inside a loop body cost about 1.5x the same products
# in straight-line code (a bidirectional-GRU recognizer, benchmarks/results/
# fit_step_breakdown.md). Iterations after a stop are computed and discarded.
UNROLL_LIMIT = 10


def _loop(running, body, state, max_iterations):
    """``tf.while_loop(running, body, state)``; unrolled when traced with a small cap."""
    if tf.executing_eagerly() or max_iterations > UNROLL_LIMIT:
        return tf.while_loop(running, body, state)
    for _ in range(max_iterations):
        state = _select([(running(*state), body(*state))], state)
    return state


def _select(cases, default):
    """The value of the first true condition in ``[(condition, value), ...]``."""
    out = default
    for condition, value in reversed(cases):
        out = tf.nest.map_structure(lambda a, b, c=condition: tf.where(c, a, b), value, out)
    return out


def steihaug(apply: Apply, gradient: tf.Tensor, radius, max_iterations: int) -> CGResult:
    """Steihaug-Toint CG for ``min g^T p + 1/2 p^T A p`` s.t. ``|p| <= radius``.

    Follows scipy's trust-ncg subproblem: tolerance ``min(0.5, sqrt(|g|)) |g|``;
    on negative curvature it goes to the boundary point with the lower model
    value; when a step leaves the region it stops on the boundary. ``A z`` is
    carried along (``r - g``), so model values cost no extra product.
    """
    dtype = gradient.dtype
    radius = tf.cast(radius, dtype)
    g_norm = tf.norm(gradient)
    tolerance = tf.minimum(tf.constant(0.5, dtype), tf.sqrt(g_norm)) * g_norm
    zero = tf.zeros_like(gradient)
    false = tf.constant(False)

    def model(p, ap):
        return _dot(gradient, p) + 0.5 * _dot(p, ap)

    def body(i, z, r, d, done, step, a_step, hits, negative, nonfinite):
        bd = apply(d)
        az = r - gradient
        bad = ~_finite(bd)
        d_bd = _dot(d, bd)
        ta, tb = _boundary(z, d, radius)
        to_b = model(z + tb * d, az + tb * bd) < model(z + ta * d, az + ta * bd)
        t_negative = tf.where(to_b, tb, ta)
        r_squared = _dot(r, r)
        alpha = r_squared / d_bd
        z_next = z + alpha * d
        r_next = r + alpha * bd
        r_next_squared = _dot(r_next, r_next)
        is_negative = ~bad & (d_bd <= 0)
        is_outside = ~bad & ~is_negative & (tf.norm(z_next) >= radius)
        is_converged = ~bad & ~is_negative & ~is_outside & (tf.sqrt(r_next_squared) < tolerance)
        step, a_step = _select(
            [
                (bad, (zero, zero)),
                (is_negative, (z + t_negative * d, az + t_negative * bd)),
                (is_outside, (z + tb * d, az + tb * bd)),
            ],
            (z_next, r_next - gradient),
        )
        d_next = -r_next + (r_next_squared / r_squared) * d
        return (
            i + 1,
            z_next,
            r_next,
            d_next,
            bad | is_negative | is_outside | is_converged,
            step,
            a_step,
            hits | is_negative | is_outside,
            negative | is_negative,
            nonfinite | bad,
        )

    def running(i, z, r, d, done, *_):
        return ~done & (i < max_iterations) & (g_norm > 0)

    i, _, _, _, _, step, a_step, hits, negative, nonfinite = _loop(
        running,
        body,
        (tf.constant(0), zero, gradient, -gradient, false, zero, zero, false, false, false),
        max_iterations,
    )
    return CGResult(step, i, hits, negative, nonfinite, model(step, a_step))


def _boundary(z, d, radius):
    """The two ``t`` with ``|z + t d| = radius``, smaller first."""
    a = _dot(d, d)
    b = 2 * _dot(z, d)
    c = _dot(z, z) - radius**2
    root = tf.sqrt(tf.maximum(b * b - 4 * a * c, 0))
    aux = b + tf.where(b >= 0, root, -root)
    safe_a = tf.where(a > 0, a, 1)
    t1 = -aux / (2 * safe_a)
    t2 = tf.where(aux != 0, -2 * c / tf.where(aux != 0, aux, 1), tf.zeros_like(aux))
    return tf.minimum(t1, t2), tf.maximum(t1, t2)


def truncated(
    apply: Apply, gradient: tf.Tensor, max_iterations: int, curvature_epsilon: float
) -> CGResult:
    """scipy Newton-CG's inner solve of ``A p = -g``.

    Forcing term ``eta = min(0.5, sqrt(|g|_1))``; stops when ``|r|_1 <= eta |g|_1``,
    on non-positive curvature (steepest descent if met at the first iteration).
    """
    dtype = gradient.dtype
    g_l1 = tf.reduce_sum(tf.abs(gradient))
    termination = tf.minimum(tf.constant(0.5, dtype), tf.sqrt(g_l1)) * g_l1
    zero = tf.zeros_like(gradient)
    false = tf.constant(False)

    def body(i, x, r, p, r_squared, done, negative, nonfinite):
        ap = apply(p)
        bad = ~_finite(ap)
        curvature = _dot(p, ap)
        flat = ~bad & (curvature >= 0) & (curvature <= curvature_epsilon)
        is_negative = ~bad & (curvature < 0)
        alpha = r_squared / curvature
        r_next = r + alpha * ap
        r_next_squared = _dot(r_next, r_next)
        first = tf.equal(i, 0)
        # At the first iteration there is no CG step yet: steepest descent (scaled by
        # the curvature along it when that is negative), not a zero step.
        x = _select(
            [
                (bad, x),
                (flat, tf.where(first, -gradient, x)),
                (is_negative, tf.where(first, (r_squared / -curvature) * -gradient, x)),
            ],
            x + alpha * p,
        )
        p_next = -r_next + (r_next_squared / r_squared) * p
        return (
            i + 1,
            x,
            r_next,
            p_next,
            r_next_squared,
            bad | flat | is_negative,
            negative | is_negative,
            nonfinite | bad,
        )

    def running(i, x, r, p, r_squared, done, *_):
        return ~done & (i < max_iterations) & (tf.reduce_sum(tf.abs(r)) > termination)

    i, x, _, _, _, _, negative, nonfinite = _loop(
        running,
        body,
        (tf.constant(0), zero, gradient, -gradient, _dot(gradient, gradient), false, false, false),
        max_iterations,
    )
    return CGResult(x, i, false, negative, nonfinite, tf.constant(0, dtype))


def backtracking_schedule(max_iterations: int) -> List[int]:
    """Martens' CG iterates kept for backtracking: ``ceil(1.3^j)``, de-duplicated."""
    kept: List[int] = []
    j = 0
    while True:
        i = math.ceil(1.3**j)
        if i > max_iterations:
            return kept
        if not kept or kept[-1] != i:
            kept.append(i)
        j += 1


def martens_should_stop(i, phis, epsilon: float = 5e-4) -> tf.Tensor:
    """Martens' (2010, section 4.4) relative-progress rule for CG on a quadratic.

    Stop at iteration ``i`` when ``i > k``, ``phi_i < 0`` and
    ``(phi_i - phi_{i-k}) / phi_i < k * epsilon`` with ``k = max(10, floor(0.1 i))``.
    ``phis[j]`` is ``phi(x_j)``, ``phis[0] = phi(x_0)`` (a tensor or a list).
    """
    phis = tf.convert_to_tensor(phis)
    i = tf.convert_to_tensor(i, tf.int32)
    k = tf.maximum(10, i // 10)
    now, before = phis[i], phis[tf.maximum(i - k, 0)]
    return (i > k) & (now < 0) & ((now - before) / now < tf.cast(k, phis.dtype) * epsilon)


def martens(
    apply: Apply,
    b: tf.Tensor,
    x0: tf.Tensor,
    max_iterations: int,
    preconditioner: Union[tf.Tensor, Apply, None] = None,
    epsilon: float = 5e-4,
    tolerance: float = 0.0,
) -> CGResult:
    """Preconditioned CG for ``A x = b`` with Martens' stopping rule and iterate storage.

    Args:
      apply: ``v -> A v`` (A positive definite, e.g. damped Gauss-Newton).
      b: the right-hand side (``-gradient``).
      x0: the warm start.
      max_iterations: cap on iterations (Martens: 250).
      preconditioner: diagonal ``M`` (the solver applies ``M^-1``), a function
        ``r -> M^-1 r`` (e.g. K-FAC's damped block inverse; symmetric positive
        definite), or None.
      epsilon: the stopping rule's tolerance.
      tolerance: also stop when ``|r| <= tolerance |b|`` (0: never).

    Returns:
      A `CGResult` whose kept iterates (`CGResult.iterates`) are
      ``(i, x_i, phi(x_i))`` at ``i = ceil(1.3^j)`` and at the last iteration.
    """
    dtype = b.dtype

    def phi(x, r):  # 1/2 x^T A x - b^T x with r = A x - b
        return 0.5 * _dot(x, r - b)

    def precondition(r):
        if preconditioner is None:
            return r
        if callable(preconditioner):
            return preconditioner(r)
        return r / preconditioner

    schedule = backtracking_schedule(max_iterations)
    scheduled = tf.constant([i in set(schedule) for i in range(max_iterations + 1)])
    slots = len(schedule) + 1
    ax = apply(x0)
    start_bad = ~_finite(ax)
    r = ax - b
    y = precondition(r)
    phis = tf.tensor_scatter_nd_update(tf.zeros([max_iterations + 1], dtype), [[0]], [phi(x0, r)])
    b_norm = tf.norm(b)
    false = tf.constant(False)

    def body(i, x, r, p, r_y, phis, done, negative, nonfinite, kept):
        ap = apply(p)
        bad = ~_finite(ap)
        curvature = _dot(p, ap)
        is_negative = ~bad & (curvature <= 0)
        alpha = r_y / curvature
        x_next = x + alpha * p
        r_next = r + alpha * ap
        y = precondition(r_next)
        r_y_next = _dot(r_next, y)
        p_next = -y + (r_y_next / r_y) * p
        phis_next = tf.tensor_scatter_nd_update(phis, [[i]], [phi(x_next, r_next)])
        moved = ~bad & ~is_negative
        stop = moved & (
            martens_should_stop(i, phis_next, epsilon)
            | tf.equal(r_y_next, 0)
            | (tf.norm(r_next) <= tolerance * b_norm)
        )
        store = moved & (scheduled[i] | stop | tf.equal(i, max_iterations))
        kept = tf.cond(store, lambda: _keep(kept, i, x_next, phis_next[i]), lambda: kept)
        x, r, p, r_y, phis = _select(
            [(moved, (x_next, r_next, p_next, r_y_next, phis_next))], (x, r, p, r_y, phis)
        )
        return (
            i + 1,
            x,
            r,
            p,
            r_y,
            phis,
            stop | bad | is_negative,
            negative | is_negative,
            nonfinite | bad,
            kept,
        )

    def running(i, x, r, p, r_y, phis, done, *_):
        return ~done & (i <= max_iterations)

    n = tf.shape(b)[0]
    kept = (
        tf.zeros([slots], tf.int32),
        tf.zeros(tf.stack([slots, n]), dtype),
        tf.zeros([slots], dtype),
        tf.constant(0),
    )
    i, x, r, _, _, phis, done, negative, nonfinite, kept = _loop(
        running,
        body,
        (tf.constant(1), x0, r, -y, _dot(r, y), phis, start_bad, false, start_bad, kept),
        max_iterations,
    )
    # Products: the one at x0, then one per iteration (i is one past the last).
    iterations = tf.where(start_bad, 1, i)
    return CGResult(x, iterations, false, negative, nonfinite, phi(x, r), *kept)


def _keep(kept, i, x, value):
    iterations, steps, values, count = kept
    return (
        tf.tensor_scatter_nd_update(iterations, [[count]], [i]),
        tf.tensor_scatter_nd_update(steps, [[count]], [x]),
        tf.tensor_scatter_nd_update(values, [[count]], [value]),
        count + 1,
    )
