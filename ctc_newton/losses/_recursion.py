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
      log_likelihood: ``[B]`` ``log p(labels | logits)``; ``-inf`` where no
        alignment has positive probability.
    """

    log_emissions: tf.Tensor
    log_alpha: tf.Tensor
    log_beta: tf.Tensor
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
    """Log forward variables ``[T, B, S]`` (frame max 0), per-frame shifts ``[T, B]``, last alpha."""
    num_frames = tf.shape(log_emissions)[0]
    # A virtual state before frame 0, sitting on s = 0: advancing it reaches s = 0, 1.
    alpha_init = tf.math.log(tf.one_hot(tf.zeros_like(logit_length), tf.shape(log_skip)[1],
                                        dtype=log_emissions.dtype))

    def body(t, alpha, alphas, shifts):
        new_alpha, shift = _shift_to_zero(
            _logsumexp3(*_predecessors(alpha, log_skip)) + log_emissions[t])
        live = t < logit_length
        alpha = tf.where(live[:, tf.newaxis], new_alpha, alpha)
        shift = tf.where(live, shift, tf.zeros_like(shift))
        return t + 1, alpha, alphas.write(t, alpha), shifts.write(t, shift)

    _, alpha_last, alphas, shifts = tf.while_loop(
        lambda t, *_: t < num_frames, body,
        (tf.constant(0), alpha_init, _array(log_emissions, num_frames, alpha_init),
         _array(log_emissions, num_frames, logit_length)),
        maximum_iterations=num_frames)
    return alphas.stack(), shifts.stack(), alpha_last


@compiled
def _backward(log_emissions, log_skip_next, log_final, logit_length):
    """Log backward variables ``[T, B, S]``, excluding frame t's emission (frame max 0)."""
    num_frames = tf.shape(log_emissions)[0]
    last_frame = logit_length - 1

    def body(i, beta, betas):
        t = num_frames - 1 - i
        following = log_emissions[tf.minimum(t + 1, num_frames - 1)] + beta
        new_beta, _ = _shift_to_zero(_logsumexp3(*_successors(following, log_skip_next)))
        beta = tf.where((t >= last_frame)[:, tf.newaxis], log_final, new_beta)
        return i + 1, beta, betas.write(t, beta)

    _, _, betas = tf.while_loop(
        lambda i, *_: i < num_frames, body,
        (tf.constant(0), log_final, _array(log_emissions, num_frames, log_final)),
        maximum_iterations=num_frames)
    return betas.stack()


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
    log_alpha, shifts, alpha_last = _forward(log_emissions, tf.math.log(lattice.skip),
                                             logit_length)
    log_beta = _backward(log_emissions, tf.math.log(lattice.skip_next), log_final,
                         logit_length)
    terminal = tf.reduce_logsumexp(alpha_last + log_final, axis=1)
    log_likelihood = tf.reduce_sum(shifts, axis=0) + terminal
    return ForwardBackward(log_emissions, log_alpha, log_beta, log_likelihood)


def _transition_weights(neighbours):
    """Normalized weights ``exp(x_j - logsumexp_j x_j)`` of the three neighbours of each state."""
    total = _finite_or_zero(_logsumexp3(*neighbours))
    return [tf.exp(x - total) for x in neighbours]


@compiled
def prefix_scores(log_alpha, log_skip, state_direction, logit_length):
    """``E[sum_{t' <= t} v_t'(pi_t') | pi_t = s]`` for all frames, ``[T, B, S]``."""
    num_frames = tf.shape(log_alpha)[0]
    # Transition weights into frame t come from alpha at t - 1 (the virtual start at t = 0).
    alpha_init = tf.math.log(tf.one_hot(tf.zeros_like(logit_length), tf.shape(log_skip)[1],
                                        dtype=log_alpha.dtype))
    previous = tf.concat([alpha_init[tf.newaxis], log_alpha[:-1]], axis=0)
    w0, w1, w2 = _transition_weights(_predecessors(previous, log_skip))

    def body(t, prefix, prefixes):
        padded = tf.pad(prefix, [[0, 0], [2, 0]])
        new_prefix = (w0[t] * prefix + w1[t] * padded[:, 1:-1] + w2[t] * padded[:, :-2]
                      + state_direction[t])
        prefix = tf.where((t < logit_length)[:, tf.newaxis], new_prefix, prefix)
        return t + 1, prefix, prefixes.write(t, prefix)

    zeros = tf.zeros_like(alpha_init)
    _, _, prefixes = tf.while_loop(
        lambda t, *_: t < num_frames, body,
        (tf.constant(0), zeros, _array(log_alpha, num_frames, zeros)),
        maximum_iterations=num_frames)
    return prefixes.stack()


@compiled
def suffix_scores(log_emissions, log_beta, log_skip_next, state_direction, logit_length):
    """``E[sum_{t' > t} v_t'(pi_t') | pi_t = s]`` for all frames, ``[T, B, S]``."""
    num_frames = tf.shape(log_beta)[0]
    last_frame = logit_length - 1
    # Transition weights out of frame t come from emission + beta at t + 1.
    following = tf.concat([log_emissions[1:] + log_beta[1:],
                           tf.fill(tf.shape(log_beta[:1]),
                                   tf.constant(-float("inf"), log_beta.dtype))], axis=0)
    u0, u1, u2 = _transition_weights(_successors(following, log_skip_next))
    following_direction = tf.concat(
        [state_direction[1:], tf.zeros_like(state_direction[:1])], axis=0)

    def body(i, suffix, suffixes):
        t = num_frames - 1 - i
        ahead = suffix + following_direction[t]
        padded = tf.pad(ahead, [[0, 0], [0, 2]])
        new_suffix = u0[t] * ahead + u1[t] * padded[:, 1:-1] + u2[t] * padded[:, 2:]
        suffix = tf.where((t >= last_frame)[:, tf.newaxis], tf.zeros_like(suffix), new_suffix)
        return i + 1, suffix, suffixes.write(t, suffix)

    zeros = tf.zeros_like(log_beta[0])
    _, _, suffixes = tf.while_loop(
        lambda i, *_: i < num_frames, body,
        (tf.constant(0), zeros, _array(log_beta, num_frames, zeros)),
        maximum_iterations=num_frames)
    return suffixes.stack()
