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
      frame_mask: ``[T, B]`` bool, ``t < logit_length``.
    """

    log_emissions: tf.Tensor
    log_alpha: tf.Tensor
    log_beta: tf.Tensor
    log_likelihood: tf.Tensor
    frame_mask: tf.Tensor


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


def _log(mask):
    return tf.math.log(mask)


def gather_states(x, lattice: Lattice):
    """``[T, B, K]`` per-class values to ``[T, B, S]`` per-state values."""
    num_frames, batch, num_classes = tf.unstack(tf.shape(x))
    flat_index = tf.range(batch)[:, tf.newaxis] * num_classes + lattice.states
    flat = tf.reshape(x, [num_frames, batch * num_classes])
    gathered = tf.gather(flat, tf.reshape(flat_index, [-1]), axis=1)
    return tf.reshape(gathered, [num_frames, batch, -1])


def scatter_states(x, lattice: Lattice, num_classes):
    """``[T, B, S]`` per-state values summed into ``[T, B, K]`` per-class values."""
    num_frames, batch, num_states = tf.unstack(tf.shape(x))
    flat_index = tf.range(batch)[:, tf.newaxis] * num_classes + lattice.states
    segment = (tf.range(num_frames)[:, tf.newaxis] * (batch * num_classes)
               + tf.reshape(flat_index, [1, -1]))
    summed = tf.math.unsorted_segment_sum(
        tf.reshape(x, [num_frames, batch * num_states]), segment,
        num_segments=num_frames * batch * num_classes)
    return tf.reshape(summed, [num_frames, batch, num_classes])


# The loops are compiled even when called eagerly (an eager while_loop runs op by op).
@tf.function(autograph=False, reduce_retracing=True)
def forward_backward(log_probs, lattice: Lattice, logit_length) -> ForwardBackward:
    """Runs the log-space forward and backward recursions together.

    Args:
      log_probs: ``[T, B, K]`` log-softmax of the logits (finite on padded frames).
      lattice: the batch's `Lattice`.
      logit_length: ``[B]`` int32 number of valid frames.

    Returns:
      A `ForwardBackward`.
    """
    num_frames = tf.shape(log_probs)[0]
    frame_mask = tf.range(num_frames)[:, tf.newaxis] < logit_length[tf.newaxis, :]
    log_emissions = gather_states(log_probs, lattice) + _log(lattice.state_mask)
    log_skip, log_skip_next = _log(lattice.skip), _log(lattice.skip_next)
    log_final = _log(lattice.final)
    last_frame = logit_length - 1
    # A virtual state before frame 0, sitting on s = 0: advancing it reaches s = 0, 1.
    alpha_init = _log(tf.one_hot(tf.zeros_like(logit_length), tf.shape(lattice.states)[1],
                                 dtype=log_probs.dtype))

    def body(i, alpha, beta, alphas, betas, shifts):
        # Forward at t = i.
        new_alpha, shift = _shift_to_zero(
            _logsumexp3(*_predecessors(alpha, log_skip)) + log_emissions[i])
        live = frame_mask[i]
        alpha = tf.where(live[:, tf.newaxis], new_alpha, alpha)
        shift = tf.where(live, shift, tf.zeros_like(shift))
        # Backward at t = T - 1 - i.
        t = num_frames - 1 - i
        following = log_emissions[tf.minimum(t + 1, num_frames - 1)] + beta
        new_beta, _ = _shift_to_zero(_logsumexp3(*_successors(following, log_skip_next)))
        beta = tf.where((t >= last_frame)[:, tf.newaxis], log_final, new_beta)
        return (i + 1, alpha, beta, alphas.write(i, alpha), betas.write(t, beta),
                shifts.write(i, shift))

    def array(element):
        return tf.TensorArray(log_probs.dtype, size=num_frames, element_shape=element.shape)

    _, alpha_last, _, alphas, betas, shifts = tf.while_loop(
        lambda i, *_: i < num_frames, body,
        (tf.constant(0), alpha_init, log_final, array(alpha_init), array(alpha_init),
         array(logit_length)),
        maximum_iterations=num_frames)
    terminal = tf.reduce_logsumexp(alpha_last + log_final, axis=1)
    log_likelihood = tf.reduce_sum(shifts.stack(), axis=0) + terminal
    return ForwardBackward(log_emissions, alphas.stack(), betas.stack(), log_likelihood,
                           frame_mask)


def _softmax_states(x):
    """Per-frame softmax over states that tolerates all-``-inf`` frames (gives 0)."""
    shifted, _ = _shift_to_zero(x)
    weights = tf.exp(shifted)
    total = tf.reduce_sum(weights, axis=-1, keepdims=True)
    return weights / tf.where(total > 0, total, tf.ones_like(total))


def state_occupancy(fb: ForwardBackward):
    """``[T, B, S]`` posterior probability of each state at each frame."""
    return _softmax_states(fb.log_alpha + fb.log_beta)


def _transition_weights(neighbours):
    """Normalized weights ``exp(x_j - logsumexp_j x_j)`` of the three neighbours of each state."""
    total = _finite_or_zero(_logsumexp3(*neighbours))
    return [tf.exp(x - total) for x in neighbours]


@tf.function(autograph=False, reduce_retracing=True)
def state_occupancy_tangent(fb: ForwardBackward, lattice: Lattice, state_direction,
                            occupancy=None):
    """Directional derivative of the state occupancy along a logit direction.

    The occupancy is the posterior ``p(pi_t = s | z, x)`` of the path distribution
    ``p(pi) ~ exp(sum_t a_t[pi_t])``; moving the logits along ``v`` tilts it by the
    path score ``<e(pi), v>``, so the derivative is the posterior covariance
    ``occupancy * (q - E[q])`` with ``q_t(s) = E[score | pi_t = s]``. ``q`` splits
    into the expected prefix score (frames ``<= t``) and suffix score (frames
    ``> t``), each a linear recursion weighted by the normalized forward
    (backward) transition probabilities.

    Args:
      fb: the `ForwardBackward` at the current logits.
      lattice: the batch's `Lattice`.
      state_direction: ``[T, B, S]`` the direction gathered at the states
        (``v_t[z'_s]``), zero on padded frames.
      occupancy: ``state_occupancy(fb)``, if already computed.

    Returns:
      ``[T, B, S]`` the occupancy tangent (meaningful on valid frames only).
    """
    num_frames = tf.shape(fb.log_alpha)[0]
    logit_length = tf.reduce_sum(tf.cast(fb.frame_mask, tf.int32), axis=0)
    last_frame = logit_length - 1
    log_skip, log_skip_next = _log(lattice.skip), _log(lattice.skip_next)
    dtype = fb.log_alpha.dtype

    # Forward weights at frame t come from alpha at t - 1 (the virtual start at t = 0).
    alpha_init = _log(tf.one_hot(tf.zeros_like(logit_length), tf.shape(lattice.states)[1],
                                 dtype=dtype))
    previous_alpha = tf.concat([alpha_init[tf.newaxis], fb.log_alpha[:-1]], axis=0)
    forward_weights = _transition_weights(_predecessors(previous_alpha, log_skip))
    # Backward weights at frame t come from emission + beta at t + 1.
    following = tf.concat([fb.log_emissions[1:] + fb.log_beta[1:],
                           tf.fill(tf.shape(fb.log_beta[:1]), tf.constant(-float("inf"), dtype))],
                          axis=0)
    backward_weights = _transition_weights(_successors(following, log_skip_next))
    following_direction = tf.concat([state_direction[1:], tf.zeros_like(state_direction[:1])],
                                    axis=0)
    w0, w1, w2 = forward_weights
    u0, u1, u2 = backward_weights

    def body(i, prefix, suffix, prefixes, suffixes):
        # E[prefix score | s at t] = sum_j w_j E[prefix score | s_j at t - 1] + v_t(s).
        padded = tf.pad(prefix, [[0, 0], [2, 0]])
        new_prefix = (w0[i] * prefix + w1[i] * padded[:, 1:-1] + w2[i] * padded[:, :-2]
                      + state_direction[i])
        prefix = tf.where(fb.frame_mask[i][:, tf.newaxis], new_prefix, prefix)
        # E[suffix score | s at t] = sum_j u_j (E[suffix | s_j at t + 1] + v_{t+1}(s_j)).
        t = num_frames - 1 - i
        ahead = suffix + following_direction[t]
        padded = tf.pad(ahead, [[0, 0], [0, 2]])
        new_suffix = u0[t] * ahead + u1[t] * padded[:, 1:-1] + u2[t] * padded[:, 2:]
        suffix = tf.where((t >= last_frame)[:, tf.newaxis], tf.zeros_like(suffix), new_suffix)
        return i + 1, prefix, suffix, prefixes.write(i, prefix), suffixes.write(t, suffix)

    zeros = tf.zeros_like(fb.log_alpha[0])

    def array():
        return tf.TensorArray(dtype, size=num_frames, element_shape=zeros.shape)

    _, _, _, prefixes, suffixes = tf.while_loop(
        lambda i, *_: i < num_frames, body, (tf.constant(0), zeros, zeros, array(), array()),
        maximum_iterations=num_frames)
    if occupancy is None:
        occupancy = state_occupancy(fb)
    score = prefixes.stack() + suffixes.stack()
    mean_score = tf.reduce_sum(occupancy * score, axis=2, keepdims=True)
    return occupancy * (score - mean_score)
