"""Output-space cotangents whose outer products give the Gauss-Newton's ``H_out``, per loss.

K-FAC (`ctc_newton.curvature.kronecker`) needs the Gauss-Newton
``J^T H_out J`` as an expectation of outer products of backpropagated
gradients: ``H_out = E[u u^T]`` for random output cotangents ``u``
(Martens & Grosse 2015, section 5: gradients under targets sampled from the
model's predictive distribution). With ``g = J^T u``, ``E[g g^T]`` is the exact
Gauss-Newton. For CTC, whose PSD Gauss-Newton is the frame-wise softmax Hessian
(``notes/ctc-curvature``), ``u_t = sqrt(w) (y_t - e_k)`` with ``k ~ y_t`` on
each live frame (``w`` the example's weight in the reduced loss).

The ``exact`` form is exact in the output classes (kfac-jax's "ggn_exact"
estimation): one cotangent per column of a square root of each position's
``H_out``, one backward pass per class, no sampling noise in the classes. The
columns are applied at all positions (frames) at once with an independent random
sign per position, so that cross-position products (a recurrent layer's
pre-activation sees every later frame) vanish in expectation as they do under
sampling; for outputs that depend on one position only the signs cancel and the
result is exact.

Each loss class registers one function; adding a loss is one `register` call.
"""

from typing import Callable, Dict, List, Optional, Type

import keras
import tensorflow as tf

from ctc_newton._keras_adapter import scale_loss_for_distribution
from ctc_newton.losses.keras_loss import CTCLoss, mask_to_length

__all__ = ["register", "output_cotangents", "supports"]

# (loss, y_true, outputs, sample_weight, seed, exact) -> list of cotangents like outputs
Sampler = Callable[..., List[tf.Tensor]]
_SAMPLERS: Dict[Type, Sampler] = {}


def register(loss_class: Type, sampler: Sampler) -> None:
    """Registers how to draw output cotangents for a loss class.

    Args:
      loss_class: a ``keras.losses.Loss`` subclass (instances of subclasses match).
      sampler: ``(loss, y_true, outputs, sample_weight, seed, exact) -> [u, ...]``:
        one sampled cotangent (``exact=False``, ``seed`` a ``[2]`` int tensor for
        stateless sampling) or the columns of a square root of ``H_out``.
    """
    _SAMPLERS[loss_class] = sampler


def _find(loss) -> Optional[Sampler]:
    if getattr(loss, "fn", None) is keras.losses.mean_squared_error:  # compile(loss="mse")
        return _squared_error
    for cls in type(loss).__mro__:
        if cls in _SAMPLERS:
            return _SAMPLERS[cls]
    return None


def supports(loss) -> bool:
    """Whether output cotangents are known for ``loss``."""
    return _find(loss) is not None and _applies(loss)


def _applies(loss) -> bool:
    if isinstance(
        loss, (keras.losses.CategoricalCrossentropy, keras.losses.SparseCategoricalCrossentropy)
    ):
        return bool(loss.get_config().get("from_logits"))
    return True


def output_cotangents(
    loss, y_true, outputs, sample_weight=None, seed=None, exact: bool = False
) -> List[tf.Tensor]:
    """Cotangents ``u`` of the model outputs with ``E[u u^T] = H_out`` (or the exact columns).

    Args:
      loss: the ``keras.losses.Loss`` the model is trained with.
      y_true: the batch targets.
      outputs: the model outputs (with their Keras mask).
      sample_weight: optional ``[B]`` weights.
      seed: ``[2]`` int32 seed of the stateless draw (classes, or signs when exact).
      exact: one cotangent per class (columns of a square root of ``H_out``).

    Returns:
      A list of tensors shaped like ``outputs``.

    Raises:
      ValueError: the loss has no registered sampler (the message says how to add one).
    """
    sampler = _find(loss)
    if sampler is None or not _applies(loss):
        raise ValueError(
            f"K-FAC has no output distribution for the loss {type(loss).__name__}: it "
            "knows CTCLoss, cross-entropy from logits and mean squared error. Register "
            "one with ctc_newton.curvature.output_sampling.register(LossClass, sampler)."
        )
    return sampler(loss, y_true, outputs, sample_weight, seed, exact)


def _example_weights(loss, sample_weight, batch, per_example_elements, dtype):
    """``[B]`` weight of each example's (element-summed) loss in the reduced loss."""
    weights = tf.ones([batch], dtype)
    if sample_weight is not None:
        weights = weights * tf.cast(tf.reshape(sample_weight, [-1]), dtype)
    if loss.reduction != "sum":  # "sum_over_batch_size": by the number of loss elements
        weights = weights / tf.cast(batch * per_example_elements, dtype)
    # Under a strategy Keras divides each replica's share by the replica count.
    return scale_loss_for_distribution(weights)


def _position_signs(shape, seed, dtype):
    """Independent random signs, one per output position."""
    bits = tf.random.stateless_uniform(shape, seed, 0, 2, dtype=tf.int32)
    return tf.cast(2 * bits - 1, dtype)


def _categorical(logits, live, weights, seed, exact) -> List[tf.Tensor]:
    """Cotangents for softmax outputs: ``sqrt(w) (y - e_k)`` on live positions."""
    probs = tf.nn.softmax(logits)
    num_classes = logits.shape[-1]
    scale = tf.sqrt(weights)
    scale = tf.reshape(scale, [-1] + [1] * (logits.shape.rank - 1)) * live[..., tf.newaxis]
    if exact:  # diag(y) - y y^T = sum_k y_k (e_k - y)(e_k - y)^T
        scale = scale * _position_signs(tf.shape(logits)[:-1], seed, logits.dtype)[..., tf.newaxis]
        return [
            scale
            * tf.sqrt(probs[..., k : k + 1])
            * (tf.one_hot(k, num_classes, dtype=probs.dtype) - probs)
            for k in range(num_classes)
        ]
    flat = tf.reshape(logits, [-1, num_classes])
    draws = tf.random.stateless_categorical(tf.cast(flat, tf.float32), 1, seed)[:, 0]
    sampled = tf.reshape(tf.one_hot(draws, num_classes, dtype=probs.dtype), tf.shape(probs))
    return [scale * (probs - sampled)]


def _ctc(loss, y_true, outputs, sample_weight, seed, exact):
    mask = getattr(outputs, "_keras_mask", None)
    logits = tf.convert_to_tensor(outputs)
    batch, frames = tf.shape(logits)[0], tf.shape(logits)[1]
    lengths = y_true.get("logit_length") if isinstance(y_true, dict) else None
    if lengths is None:
        lengths = mask_to_length(mask, frames, batch)
    live = tf.sequence_mask(lengths, frames, dtype=logits.dtype)
    weights = _example_weights(loss, sample_weight, batch, 1, logits.dtype)
    return _categorical(logits, live, weights, seed, exact)


def _cross_entropy(loss, y_true, outputs, sample_weight, seed, exact):
    logits = tf.convert_to_tensor(outputs)
    shape = tf.shape(logits)
    positions = tf.reduce_prod(shape[1:-1])
    weights = _example_weights(loss, sample_weight, shape[0], positions, logits.dtype)
    return _categorical(logits, tf.ones(shape[:-1], logits.dtype), weights, seed, exact)


def _squared_error(loss, y_true, outputs, sample_weight, seed, exact):
    outputs = tf.convert_to_tensor(outputs)
    shape = tf.shape(outputs)
    # Keras averages over the last axis: H_out = 2 / d per element.
    positions = tf.reduce_prod(shape[1:-1])
    weights = _example_weights(loss, sample_weight, shape[0], positions, outputs.dtype)
    depth = outputs.shape[-1]
    scale = tf.reshape(tf.sqrt(2.0 * weights / depth), [-1] + [1] * (outputs.shape.rank - 1))
    if exact:
        scale = scale * _position_signs(shape[:-1], seed, outputs.dtype)[..., tf.newaxis]
        return [
            scale * tf.broadcast_to(tf.one_hot(j, depth, dtype=outputs.dtype), shape)
            for j in range(depth)
        ]
    return [scale * tf.random.stateless_normal(shape, seed, dtype=outputs.dtype)]


register(CTCLoss, _ctc)
register(keras.losses.CategoricalCrossentropy, _cross_entropy)
register(keras.losses.SparseCategoricalCrossentropy, _cross_entropy)
register(keras.losses.MeanSquaredError, _squared_error)
