"""Vectors shaped like a list of variables: flattening and the few algebra helpers needed.

A "structured vector" is a list of tensors with the shapes of the variables it
belongs to. Optimizers and the linear-operator views work on flat vectors; these
helpers convert between the two without the user ever flattening by hand.
"""

from typing import List, Sequence

import tensorflow as tf

__all__ = [
    "flatten",
    "unflatten",
    "assign_flat",
    "dot",
    "add_scaled",
    "scale",
    "zeros_like",
    "norm",
    "structured_like",
]


def flatten(vectors: Sequence[tf.Tensor]) -> tf.Tensor:
    """Concatenates a structured vector into one 1-D tensor."""
    return tf.concat([tf.reshape(v, [-1]) for v in vectors], axis=0)


def unflatten(flat: tf.Tensor, like: Sequence) -> List[tf.Tensor]:
    """Splits a 1-D tensor into tensors shaped (and typed) like ``like``.

    Args:
      flat: ``[n]`` with ``n`` the total size of ``like``.
      like: variables or tensors giving shapes and dtypes.

    Returns:
      A list of tensors, one per entry of ``like``.
    """
    sizes = [
        int(tf.size(v)) if not v.shape.is_fully_defined() else v.shape.num_elements() for v in like
    ]
    parts = tf.split(tf.reshape(flat, [-1]), sizes)
    return [tf.cast(tf.reshape(p, tf.shape(v)), v.dtype) for p, v in zip(parts, like)]


def assign_flat(variables: Sequence, flat: tf.Tensor) -> None:
    """Sets ``variables`` from one 1-D tensor (the inverse of flattening them)."""
    for variable, value in zip(variables, unflatten(flat, variables)):
        variable.assign(value)


def dot(a: Sequence[tf.Tensor], b: Sequence[tf.Tensor]) -> tf.Tensor:
    """Inner product of two structured vectors."""
    return tf.add_n([tf.reduce_sum(x * y) for x, y in zip(a, b)])


def norm(a: Sequence[tf.Tensor]) -> tf.Tensor:
    """Euclidean norm of a structured vector."""
    return tf.sqrt(dot(a, a))


def add_scaled(a: Sequence[tf.Tensor], alpha, b: Sequence[tf.Tensor]) -> List[tf.Tensor]:
    """``a + alpha * b``."""
    return [x + tf.cast(alpha, x.dtype) * y for x, y in zip(a, b)]


def scale(alpha, a: Sequence[tf.Tensor]) -> List[tf.Tensor]:
    """``alpha * a``."""
    return [tf.cast(alpha, x.dtype) * x for x in a]


def zeros_like(a: Sequence) -> List[tf.Tensor]:
    """A structured zero vector."""
    return [tf.zeros(tf.shape(x), x.dtype) for x in a]


def structured_like(vector: Sequence, variables: Sequence) -> List[tf.Tensor]:
    """Checks that ``vector`` has one part per variable and casts each to its dtype.

    Raises:
      ValueError: the number of parts differs (e.g. a flat vector was passed).
    """
    vector = list(vector)
    if len(vector) != len(variables):
        raise ValueError(
            f"The vector has {len(vector)} parts; the oracle has "
            f"{len(variables)} variables. Use "
            "ctc_newton.curvature.unflatten for flat vectors."
        )
    return [
        tf.cast(tf.convert_to_tensor(v), tf.as_dtype(w.dtype)) for v, w in zip(vector, variables)
    ]
