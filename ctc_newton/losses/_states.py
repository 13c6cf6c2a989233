"""Between class space (``[B, T, K]``, like the logits) and lattice state space.

State-space tensors are time-major ``[T, B, S]`` (the recursions step over T). The
functions that touch whole ``[B, T, K]`` / ``[T, B, S]`` tensors are compiled (XLA
unless turned off, see _compile) so that masking, softmax, gathers, transposes and
scatters fuse into few passes.
"""

import tensorflow as tf

from ctc_newton.losses._compile import compiled

# Scattering states into classes with a one-hot matmul costs T B L K; beyond this many
# classes a segment sum (T B S, but slow on CPU) is cheaper.
_ONE_HOT_MAX_CLASSES = 1024


def uses_one_hot(num_classes) -> bool:
    """Whether to scatter with a one-hot matmul (a static choice for the compiled code)."""
    return isinstance(num_classes, int) and num_classes <= _ONE_HOT_MAX_CLASSES


def gather_states(x, states):
    """``[B, T, K]`` per-class values to ``[T, B, S]`` per-state values."""
    return tf.transpose(tf.gather(x, states, axis=2, batch_dims=1), [1, 0, 2])


def scatter_states(x, states, num_classes, one_hot: bool):
    """``[T, B, S]`` per-state values summed into ``[B, T, K]`` per-class values.

    Even states are the blank (``states[:, 0]``); odd states are the labels.
    """
    if one_hot:
        blank_total = tf.transpose(tf.reduce_sum(x[:, :, 0::2], axis=2))  # [B, T]
        label_classes = tf.one_hot(states[:, 1::2], num_classes, dtype=x.dtype)
        out = tf.einsum("tbl,blk->btk", x[:, :, 1::2], label_classes)
        blank_class = tf.one_hot(states[:, 0], num_classes, dtype=x.dtype)
        return out + blank_total[:, :, tf.newaxis] * blank_class[:, tf.newaxis, :]
    num_frames, batch, num_states = tf.unstack(tf.shape(x))
    x = tf.transpose(x, [1, 0, 2])  # [B, T, S]
    segment = (
        tf.range(batch)[:, tf.newaxis, tf.newaxis] * num_frames
        + tf.range(num_frames)[tf.newaxis, :, tf.newaxis]
    ) * num_classes + states[:, tf.newaxis, :]
    summed = tf.math.unsorted_segment_sum(x, segment, batch * num_frames * num_classes)
    return tf.reshape(summed, [batch, num_frames, num_classes])


def occupancy(log_alpha, log_beta):
    """``[T, B, S]`` state posteriors: per-frame softmax of ``alpha + beta`` (0 if all -inf)."""
    joint = log_alpha + log_beta
    top = tf.reduce_max(joint, axis=2, keepdims=True)
    weights = tf.exp(joint - tf.where(tf.math.is_finite(top), top, tf.zeros_like(top)))
    total = tf.reduce_sum(weights, axis=2, keepdims=True)
    return weights / tf.where(total > 0, total, tf.ones_like(total))


def softmax_hessian_product(probs, vector):
    """Frame-wise ``(diag(y) - y y^T) v`` on the last axis."""
    return probs * (vector - tf.reduce_sum(probs * vector, axis=-1, keepdims=True))


def _masked(mask, x):
    return tf.where(mask, x, tf.zeros_like(x))


@compiled
def log_probabilities(logits, frame_mask):
    """Log-softmax ``[B, T, K]``, padded frames replaced by zeros first (they may hold NaN)."""
    return tf.nn.log_softmax(_masked(frame_mask[:, :, tf.newaxis], logits))


# Kept apart from log_probabilities: XLA on CPU fuses a softmax output with a gather
# output into one slow loop (6x slower at B=64, T=500, K=128).
@compiled
def state_log_emissions(log_probs, states, state_mask):
    """``[T, B, S]`` log-probability of each state's class, ``-inf`` on padding states."""
    return gather_states(log_probs, states) + tf.math.log(state_mask)


@compiled
def gradient(probs, log_alpha, log_beta, states, live, one_hot):
    """``softmax - occupancy`` on live frames ``[B, T, K]``."""
    occupied = scatter_states(occupancy(log_alpha, log_beta), states, tf.shape(probs)[2], one_hot)
    return _masked(live, probs - occupied)


@compiled
def state_direction(vector, frame_mask, states):
    """A direction's values at the states ``[T, B, S]``, zero on dead frames."""
    gathered = gather_states(vector, states)
    return _masked(tf.transpose(frame_mask, [1, 0, 2]), gathered)


@compiled
def hessian_product(probs, vector, log_alpha, log_beta, prefix, suffix, states, live, one_hot):
    """Exact Hessian times ``vector`` from the prefix/suffix expected path scores.

    ``vector`` may hold anything on dead frames: the frame-wise term does not mix
    frames and the result is masked. The coupling term is the posterior covariance
    of the state indicators with the path score: ``occupancy * (q - E[q])``,
    ``q = prefix + suffix``.
    """
    occupied = occupancy(log_alpha, log_beta)
    score = prefix + suffix
    mean_score = tf.reduce_sum(occupied * score, axis=2, keepdims=True)
    coupled = scatter_states(occupied * (score - mean_score), states, tf.shape(probs)[2], one_hot)
    return _masked(live, softmax_hessian_product(probs, vector) - coupled)


@compiled
def gauss_newton_product(probs, vector, live):
    """The frame-wise softmax Hessian times ``vector`` on live frames."""
    return _masked(live, softmax_hessian_product(probs, _masked(live, vector)))
