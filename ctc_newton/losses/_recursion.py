"""Log-space CTC forward-backward recursions and their tangents.

All tensors are time-major. The forward variables ``alpha`` (including frame t's
emission) and backward variables ``beta`` (excluding it) are kept in log space,
each frame shifted so its largest entry is 0: values never underflow, whatever
the sequence length or the spread of probabilities across states (probability
space, even rescaled per frame, loses states whose mass is below the smallest
float relative to the frame's largest, which happens at T in the thousands).
Occupancies are a per-frame softmax of ``alpha + beta``: no large numbers cancel.
Forward and backward run in one loop.

The Hessian needs the derivative of the occupancy along a direction ``v``. It is
the posterior covariance of the state indicator with the path score
``<e(pi), v>``, obtained from two *linear* recursions for the expected score of
the path prefix (suffix) given the state; their weights are precomputed for all
frames at once, so the sequential part is a handful of ops per frame.

Storage is O(T B S): nothing here builds a Hessian or a T x S x K tensor.
"""

from typing import NamedTuple

import tensorflow as tf

from ctc_newton.losses._compile import compiled
from ctc_newton.losses._lattice import Lattice


class ForwardBackward(NamedTuple):
    """What one forward-backward pass leaves behind for gradients and HVPs.

    Attributes:
      log_emissions: ``[T, B, S]`` log-probability of each state's class
        (``-inf`` on padding states).
      log_alpha: ``[T, B, S]`` log forward variables, frame max shifted to 0
        (frozen after ``logit_length``).
      log_beta: ``[T, B, S]`` log backward variables, excluding frame t's
        emission, frame max shifted to 0.
      alpha_shift: ``[T, B]`` what was subtracted from each frame of ``log_alpha``.
      beta_shift: ``[T, B]`` what was subtracted from each frame of ``log_beta``.
      log_likelihood: ``[B]`` ``log p(labels | logits)``; ``-inf`` where no
        alignment has positive probability.
    """

    log_emissions: tf.Tensor
    log_alpha: tf.Tensor
    log_beta: tf.Tensor
    alpha_shift: tf.Tensor
    beta_shift: tf.Tensor
    log_likelihood: tf.Tensor


def _finite_or_zero(x):
    return tf.where(tf.math.is_finite(x), x, tf.zeros_like(x))


def _logsumexp3(x0, x1, x2):
    """Elementwise ``log(exp(x0) + exp(x1) + exp(x2))``, ``-inf`` when all are."""
    top = _finite_or_zero(tf.maximum(tf.maximum(x0, x1), x2))
    return top + tf.math.log(tf.exp(x0 - top) + tf.exp(x1 - top) + tf.exp(x2 - top))


def _predecessors(x, log_skip):
    """Log values at ``s``, ``s - 1`` and (where allowed) ``s - 2``; works on any leading dims."""
    rank = len(x.shape)
    padded = tf.pad(x, [[0, 0]] * (rank - 1) + [[2, 0]], constant_values=float("-inf"))
    return x, padded[..., 1:-1], padded[..., :-2] + log_skip


def _successors(y, log_skip_next):
    """Log values at ``s``, ``s + 1`` and (where allowed) ``s + 2``."""
    rank = len(y.shape)
    padded = tf.pad(y, [[0, 0]] * (rank - 1) + [[0, 2]], constant_values=float("-inf"))
    return y, padded[..., 1:-1], padded[..., 2:] + log_skip_next


def _shift_to_zero(x):
    """Shifts each row so its max is 0; returns the shift (``-inf`` for an all ``-inf`` row)."""
    top = tf.reduce_max(x, axis=-1)
    return x - _finite_or_zero(top)[..., tf.newaxis], top


# Each recursion is one compiled function (see _compile): the loop body fuses into a few
# kernels instead of dozens of small ops per frame, and the forward and backward
# recursions, being independent functions, run concurrently on two cores.


@compiled
def _forward(log_emissions, log_skip, logit_length):
    """Log forward variables ``[T, B, S]`` (frame max 0), per-frame shifts ``[T, B]``,
    last alpha."""
    num_frames = tf.shape(log_emissions)[0]
    # A virtual state before frame 0, sitting on s = 0: advancing it reaches s = 0, 1.
    alpha_init = tf.math.log(
        tf.one_hot(tf.zeros_like(logit_length), tf.shape(log_skip)[1], dtype=log_emissions.dtype)
    )

    def body(t, alpha, alphas, shifts):
        new_alpha, shift = _shift_to_zero(
            _logsumexp3(*_predecessors(alpha, log_skip)) + log_emissions[t]
        )
        live = t < logit_length
        alpha = tf.where(live[:, tf.newaxis], new_alpha, alpha)
        shift = tf.where(live, shift, tf.zeros_like(shift))
        return t + 1, alpha, alphas.write(t, alpha), shifts.write(t, shift)

    _, alpha_last, alphas, shifts = tf.while_loop(
        lambda t, *_: t < num_frames,
        body,
        (
            tf.constant(0),
            alpha_init,
            _array(log_emissions, num_frames, alpha_init),
            _array(log_emissions, num_frames, logit_length),
        ),
        maximum_iterations=num_frames,
    )
    return alphas.stack(), shifts.stack(), alpha_last


@compiled
def _backward(log_emissions, log_skip_next, log_final, logit_length):
    """Log backward variables ``[T, B, S]``, excluding frame t's emission (frame max 0),
    and the per-frame shifts ``[T, B]``."""
    num_frames = tf.shape(log_emissions)[0]
    last_frame = logit_length - 1

    def body(i, beta, betas, shifts):
        t = num_frames - 1 - i
        following = log_emissions[tf.minimum(t + 1, num_frames - 1)] + beta
        new_beta, shift = _shift_to_zero(_logsumexp3(*_successors(following, log_skip_next)))
        at_end = t >= last_frame
        beta = tf.where(at_end[:, tf.newaxis], log_final, new_beta)
        shift = tf.where(at_end, tf.zeros_like(shift), shift)
        return i + 1, beta, betas.write(t, beta), shifts.write(t, shift)

    _, _, betas, shifts = tf.while_loop(
        lambda i, *_: i < num_frames,
        body,
        (
            tf.constant(0),
            log_final,
            _array(log_emissions, num_frames, log_final),
            _array(log_emissions, num_frames, logit_length),
        ),
        maximum_iterations=num_frames,
    )
    return betas.stack(), shifts.stack()


def _array(like, size, element):
    return tf.TensorArray(like.dtype, size=size, element_shape=element.shape)


def forward_backward(log_emissions, lattice: Lattice, logit_length) -> ForwardBackward:
    """Runs the log-space forward and backward recursions (concurrently in graph mode).

    Args:
      log_emissions: ``[T, B, S]`` log-probability of each state's class at each
        frame, ``-inf`` on padding states, finite on padded frames.
      lattice: the batch's `Lattice`.
      logit_length: ``[B]`` int32 number of valid frames.

    Returns:
      A `ForwardBackward`.
    """
    log_final = tf.math.log(lattice.final)
    log_alpha, alpha_shift, alpha_last = _forward(
        log_emissions, tf.math.log(lattice.skip), logit_length
    )
    log_beta, beta_shift = _backward(
        log_emissions, tf.math.log(lattice.skip_next), log_final, logit_length
    )
    terminal = tf.reduce_logsumexp(alpha_last + log_final, axis=1)
    log_likelihood = tf.reduce_sum(alpha_shift, axis=0) + terminal
    return ForwardBackward(
        log_emissions, log_alpha, log_beta, alpha_shift, beta_shift, log_likelihood
    )


def _transition_weights(neighbours, log_total):
    """Weights ``exp(x_j) / sum_j exp(x_j)`` of the three neighbours of each state.

    ``log_total`` is the log of the sum as the recursion computed it; it is only an
    offset against overflow, the division makes the weights sum to one exactly.
    """
    offset = _finite_or_zero(log_total)
    weights = [tf.exp(x - offset) for x in neighbours]
    total = weights[0] + weights[1] + weights[2]
    total = tf.where(total > 0, total, tf.ones_like(total))
    return [w / total for w in weights]


def _prefix_weight_terms(fb: ForwardBackward, log_skip, logit_length):
    # Transition weights into frame t come from alpha at t - 1 (the virtual start at t = 0).
    alpha_init = tf.math.log(
        tf.one_hot(tf.zeros_like(logit_length), tf.shape(log_skip)[1], dtype=fb.log_alpha.dtype)
    )
    previous = tf.concat([alpha_init[tf.newaxis], fb.log_alpha[:-1]], axis=0)
    # The forward pass computed alpha_t = logsumexp(predecessors) + emission - shift.
    log_total = fb.log_alpha - fb.log_emissions + fb.alpha_shift[:, :, tf.newaxis]
    return _transition_weights(_predecessors(previous, log_skip), log_total)


def _suffix_weight_terms(fb: ForwardBackward, log_skip_next):
    # Transition weights out of frame t come from emission + beta at t + 1.
    following = tf.concat(
        [
            fb.log_emissions[1:] + fb.log_beta[1:],
            tf.fill(tf.shape(fb.log_beta[:1]), tf.constant(-float("inf"), fb.log_beta.dtype)),
        ],
        axis=0,
    )
    # The backward pass computed beta_t = logsumexp(successors) - shift.
    log_total = fb.log_beta + fb.beta_shift[:, :, tf.newaxis]
    return _transition_weights(_successors(following, log_skip_next), log_total)


def _prefix_loop(weights, state_direction, logit_length):
    """``prefix_t = sum_j w_j prefix_{t-1}(s_j) + v_t``, frozen past ``logit_length``."""
    num_frames = tf.shape(state_direction)[0]
    w0, w1, w2 = weights

    def body(t, prefix, prefixes):
        padded = tf.pad(prefix, [[0, 0], [2, 0]])
        new_prefix = (
            w0[t] * prefix + w1[t] * padded[:, 1:-1] + w2[t] * padded[:, :-2] + state_direction[t]
        )
        prefix = tf.where((t < logit_length)[:, tf.newaxis], new_prefix, prefix)
        return t + 1, prefix, prefixes.write(t, prefix)

    zeros = tf.zeros_like(state_direction[0])
    _, _, prefixes = tf.while_loop(
        lambda t, *_: t < num_frames,
        body,
        (tf.constant(0), zeros, _array(state_direction, num_frames, zeros)),
        maximum_iterations=num_frames,
    )
    return prefixes.stack()


def _suffix_loop(weights, state_direction, logit_length):
    """``suffix_t = sum_j u_j (suffix_{t+1}(s_j) + v_{t+1}(s_j))``, zero from the last frame."""
    num_frames = tf.shape(state_direction)[0]
    last_frame = logit_length - 1
    u0, u1, u2 = weights

    def body(i, suffix, suffixes):
        t = num_frames - 1 - i
        ahead = suffix + state_direction[tf.minimum(t + 1, num_frames - 1)]
        padded = tf.pad(ahead, [[0, 0], [0, 2]])
        new_suffix = u0[t] * ahead + u1[t] * padded[:, 1:-1] + u2[t] * padded[:, 2:]
        suffix = tf.where((t >= last_frame)[:, tf.newaxis], tf.zeros_like(suffix), new_suffix)
        return i + 1, suffix, suffixes.write(t, suffix)

    zeros = tf.zeros_like(state_direction[0])
    _, _, suffixes = tf.while_loop(
        lambda i, *_: i < num_frames,
        body,
        (tf.constant(0), zeros, _array(state_direction, num_frames, zeros)),
        maximum_iterations=num_frames,
    )
    return suffixes.stack()


# Two ways to run the score recursions. For one product, computing the transition
# weights inside the compiled loop is fastest (XLA fuses them into the loop body).
# For many products at one point (a CG solve), the weights are computed once and
# stored ([3, T, B, S] per direction), and each product is only the linear loops.
@compiled
def prefix_scores_at(fb: ForwardBackward, log_skip, state_direction, logit_length):
    """``E[sum_{t' <= t} v_t'(pi_t') | pi_t = s]`` for all frames, ``[T, B, S]``."""
    return _prefix_loop(
        _prefix_weight_terms(fb, log_skip, logit_length), state_direction, logit_length
    )


@compiled
def suffix_scores_at(fb: ForwardBackward, log_skip_next, state_direction, logit_length):
    """``E[sum_{t' > t} v_t'(pi_t') | pi_t = s]`` for all frames, ``[T, B, S]``."""
    return _suffix_loop(_suffix_weight_terms(fb, log_skip_next), state_direction, logit_length)


@compiled
def prefix_weights(fb: ForwardBackward, log_skip, logit_length):
    """``[3, T, B, S]`` forward transition probabilities into each state from ``s``,
    ``s - 1`` and ``s - 2``, given the state (they depend on the point, not on ``v``)."""
    return tf.stack(_prefix_weight_terms(fb, log_skip, logit_length))


@compiled
def suffix_weights(fb: ForwardBackward, log_skip_next):
    """``[3, T, B, S]`` backward transition probabilities out of each state to ``s``,
    ``s + 1`` and ``s + 2`` at the next frame, given the state."""
    return tf.stack(_suffix_weight_terms(fb, log_skip_next))


@compiled
def prefix_scores(weights, state_direction, logit_length):
    """`prefix_scores_at` from stored `prefix_weights`."""
    return _prefix_loop(tf.unstack(weights, 3), state_direction, logit_length)


@compiled
def suffix_scores(weights, state_direction, logit_length):
    """`suffix_scores_at` from stored `suffix_weights`."""
    return _suffix_loop(tf.unstack(weights, 3), state_direction, logit_length)
