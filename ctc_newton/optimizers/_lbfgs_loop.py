"""The L-BFGS iteration as TensorFlow ops: traceable into one graph.

State, memory layout and stopping rules are those of
``tfp.optimizer.lbfgs_minimize`` (its ``LBfgsOptimizerResults``, newest
correction pair last), so results and checkpoints interchange with it. The
difference is the line search: tfp's Hager-Zhang search always brackets and
bisects, about three evaluations per iteration even where the quasi-Newton step
is already acceptable, and its nested loops take seconds to trace. Here the
trial step is tested against the strong Wolfe conditions first and a compact
bracket-and-zoom search (Nocedal & Wright 3.5/3.6, what scipy uses) runs only
when it fails, so most iterations cost one evaluation, as scipy's L-BFGS-B's do.
"""

import collections
from typing import Tuple

import tensorflow as tf
from tensorflow_probability.python.optimizer.lbfgs import LBfgsOptimizerResults as Results

# Strong Wolfe constants of scipy's line searches (Nocedal & Wright's defaults).
SUFFICIENT_DECREASE = 1e-4
CURVATURE = 0.9

LinePoint = collections.namedtuple("LinePoint", ["x", "f", "df", "full_gradient"])

# What each iteration of a run reached: its loss and gradient norm, and (when asked
# for) its position and gradient, stacked over the run's iterations; None when not kept.
IterationTrace = collections.namedtuple(
    "IterationTrace", ["values", "gradient_norms", "positions", "gradients"]
)


def initial_state(position, value, gradient, num_correction_pairs, tolerance) -> Results:
    """tfp's initial ``LBfgsOptimizerResults`` from an evaluation at hand."""
    zeros = tf.zeros([num_correction_pairs, tf.shape(position)[0]], position.dtype)
    return Results(
        converged=tf.reduce_max(tf.abs(gradient)) <= tolerance,
        failed=tf.constant(False),
        num_iterations=tf.constant(0),
        num_objective_evaluations=tf.constant(0),
        position=position,
        objective_value=value,
        objective_gradient=gradient,
        position_deltas=zeros,
        gradient_deltas=zeros,
    )


def search_direction(state: Results) -> tf.Tensor:
    """``-H g`` by the two-loop recursion over the filled correction pairs."""
    m = state.position_deltas.shape[0]
    filled = tf.minimum(state.num_iterations, m)
    g = state.objective_gradient
    q, alphas = g, []
    # Newest pair last; pairs before index m - filled are empty and skipped.
    for i in reversed(range(m)):
        s, y = state.position_deltas[i], state.gradient_deltas[i]
        sy = tf.reduce_sum(s * y)
        used = (i >= m - filled) & (sy > 0)
        alpha = tf.where(used, tf.reduce_sum(s * q) / tf.where(used, sy, 1), 0)
        q = q - alpha * y
        alphas.append(alpha)
    s, y = state.position_deltas[-1], state.gradient_deltas[-1]
    sy, yy = tf.reduce_sum(s * y), tf.reduce_sum(y * y)
    gamma = tf.where((filled > 0) & (sy > 0) & (yy > 0), sy / tf.where(yy > 0, yy, 1), 1)
    r = gamma * q
    for i, alpha in zip(range(m), reversed(alphas)):
        s, y = state.position_deltas[i], state.gradient_deltas[i]
        sy = tf.reduce_sum(s * y)
        used = (i >= m - filled) & (sy > 0)
        beta = tf.where(used, tf.reduce_sum(y * r) / tf.where(used, sy, 1), 0)
        r = r + s * (alpha - beta)
    return -r


def _cubic_minimizer(a, b):
    """The minimizer of the cubic through two points' values and slopes (Nocedal &
    Wright eq. 3.59), or their midpoint when it is not safely inside the interval."""
    d1 = a.df + b.df - 3 * (a.f - b.f) / (a.x - b.x)
    radicand = d1 * d1 - a.df * b.df
    d2 = tf.sign(b.x - a.x) * tf.sqrt(tf.maximum(radicand, 0))
    t = b.x - (b.x - a.x) * (b.df + d2 - d1) / (b.df - a.df + 2 * d2)
    low, high = tf.minimum(a.x, b.x), tf.maximum(a.x, b.x)
    margin = 0.1 * (high - low)
    safe = (radicand >= 0) & tf.math.is_finite(t) & (t > low + margin) & (t < high - margin)
    return tf.where(safe, t, (a.x + b.x) / 2)


def _pick(condition, a, b):
    """``a`` where ``condition`` else ``b``, field by field."""
    return tf.nest.map_structure(lambda x, y: tf.where(condition, x, y), a, b)


def _line_search(value_and_gradients, state, direction, max_evaluations):
    """A strong Wolfe step along ``direction``: ``(point, evaluations, found)``.

    Nocedal & Wright's algorithms 3.5/3.6 (scipy's ``line_search_wolfe2``) as one
    ``tf.while_loop``: try the trial step, double it until the minimum is
    bracketed, then zoom with safeguarded cubic interpolation. A non-finite loss
    or gradient counts as "too far" (the step shrinks toward the last good one).
    """
    dtype = state.position.dtype

    def along(t):
        f, g = value_and_gradients(state.position + t * direction)
        finite = tf.math.is_finite(f) & tf.reduce_all(tf.math.is_finite(g))
        return LinePoint(
            x=t,
            f=tf.where(finite, f, tf.constant(float("inf"), dtype)),
            df=tf.where(finite, tf.reduce_sum(g * direction), 0),
            full_gradient=g,
        )

    origin = LinePoint(
        x=tf.constant(0, dtype),
        f=state.objective_value,
        df=tf.reduce_sum(state.objective_gradient * direction),
        full_gradient=state.objective_gradient,
    )
    # Unit step once curvature is known; scipy's min(1, 1/|g|) on a fresh memory.
    first = tf.where(
        state.num_iterations > 0,
        tf.constant(1, dtype),
        tf.minimum(tf.constant(1, dtype), 1 / tf.norm(state.objective_gradient)),
    )

    # lo: the best point with sufficient decrease so far; hi: the other end of the
    # bracket once there is one; point: the newest evaluation, to classify.
    def body(lo, hi, point, bracketed, found, evaluations):
        too_far = (point.f > origin.f + SUFFICIENT_DECREASE * point.x * origin.df) | (
            point.f >= lo.f
        )
        found = ~too_far & (tf.abs(point.df) <= -CURVATURE * origin.df)
        # Not too far: ``point`` is the new lo; the old lo becomes hi when the slope
        # at ``point`` points back toward it (before a bracket: the slope is >= 0).
        turns = tf.where(bracketed, point.df * (hi.x - lo.x) >= 0, point.df >= 0)
        new_lo = _pick(too_far, lo, point)
        new_hi = _pick(too_far, point, _pick(turns, lo, hi))
        bracketed = bracketed | too_far | turns
        width = tf.abs(new_hi.x - new_lo.x)
        go_on = (
            ~found
            & (evaluations < max_evaluations)
            & ~(bracketed & (width <= 1e-10 * tf.maximum(new_hi.x, new_lo.x)))
        )
        next_x = tf.where(bracketed, _cubic_minimizer(new_lo, new_hi), 2 * point.x)
        point = tf.cond(go_on, lambda: along(next_x), lambda: _pick(found, point, new_lo))
        return (
            new_lo,
            new_hi,
            point,
            bracketed,
            found | ~go_on,
            evaluations + tf.cast(go_on, tf.int32),
        ), found

    def loop_body(loop_state, _):
        return body(*loop_state)

    loop_state, found = tf.while_loop(
        lambda loop_state, found: ~loop_state[4],
        loop_body,
        (
            (origin, origin, along(first), tf.constant(False), tf.constant(False), tf.constant(1)),
            tf.constant(False),
        ),
    )
    _, _, point, _, _, evaluations = loop_state
    return point, evaluations, found


def minimize_from(
    value_and_gradients,
    state: Results,
    max_iterations,
    *,
    tolerance,
    x_tolerance,
    f_relative_tolerance,
    max_line_search_iterations,
    keep_iterates: bool = False,
) -> Tuple[Results, IterationTrace]:
    """Continues L-BFGS from ``state`` until it converges, fails or has done
    ``max_iterations`` iterations in all (``state.num_iterations`` counts them).

    Args:
      value_and_gradients: ``flat position -> (value, flat gradient)``.
      state: an ``LBfgsOptimizerResults`` (e.g. from `initial_state` or a
        previous run).
      max_iterations: the total iteration count at which to stop.
      tolerance, x_tolerance, f_relative_tolerance: tfp's stopping rules.
      max_line_search_iterations: the Hager-Zhang fallback's cap.
      keep_iterates: also keep each iteration's position and gradient in the
        trace (for a per-iteration callback; memory: two vectors per iteration).

    Returns:
      The final ``LBfgsOptimizerResults`` (``failed`` when the line search
      failed or met only non-finite values; the position is then the last
      accepted one) and the run's `IterationTrace`.
    """

    def active(state):
        return ~state.converged & ~state.failed & (state.num_iterations < max_iterations)

    def iterate(state):
        direction = search_direction(state)
        slope = tf.reduce_sum(direction * state.objective_gradient)
        point, evaluations, found = _line_search(
            value_and_gradients, state, direction, max_line_search_iterations
        )
        finite = tf.math.is_finite(point.f) & tf.reduce_all(tf.math.is_finite(point.full_gradient))
        ok = found & finite & (slope < 0) & (point.x > 0)
        s = point.x * direction
        y = point.full_gradient - state.objective_gradient
        keep_pair = ok & (tf.reduce_sum(s * y) > 0)
        position = tf.where(ok, state.position + s, state.position)
        value = tf.where(ok, point.f, state.objective_value)
        gradient = tf.where(ok, point.full_gradient, state.objective_gradient)
        converged = ok & (
            (tf.reduce_max(tf.abs(gradient)) <= tolerance)
            | (tf.reduce_max(tf.abs(s)) <= x_tolerance)
            | (
                tf.abs(value - state.objective_value)
                <= f_relative_tolerance * tf.abs(state.objective_value)
            )
        )

        def push(queue, new):
            return tf.where(keep_pair, tf.concat([queue[1:], new[tf.newaxis]], 0), queue)

        return (
            Results(
                converged=converged,
                failed=~ok,
                num_iterations=state.num_iterations + 1,
                num_objective_evaluations=state.num_objective_evaluations + evaluations,
                position=position,
                objective_value=value,
                objective_gradient=gradient,
                position_deltas=push(state.position_deltas, s),
                gradient_deltas=push(state.gradient_deltas, y),
            ),
        )

    # Each iteration's loss and gradient norm (and position and gradient) go into
    # TensorArrays carried by the loop: per-iteration reports cost no host sync.
    start = state.num_iterations
    vector = state.position.shape
    shapes = [[], []] + ([vector, vector] if keep_iterates else [])
    arrays = tuple(
        tf.TensorArray(state.position.dtype, size=0, dynamic_size=True, element_shape=shape)
        for shape in shapes
    )

    def iterate_and_record(state, arrays):
        (new,) = iterate(state)
        i = new.num_iterations - start - 1
        entries = [new.objective_value, tf.norm(new.objective_gradient)]
        if keep_iterates:
            entries += [new.position, new.objective_gradient]
        return new, tuple(a.write(i, entry) for a, entry in zip(arrays, entries))

    final, arrays = tf.while_loop(
        lambda state, arrays: active(state), iterate_and_record, (state, arrays)
    )
    stacked = [a.stack() for a in arrays] + [None, None]
    return final, IterationTrace(*stacked[:4])
