"""The curvature of a `CurvatureOracle` as a ``tf.linalg.LinearOperator``."""

import tensorflow as tf

from ctc_newton.curvature import vectors


class CurvatureOperator(tf.linalg.LinearOperator):
    """``A + damping I`` over flat vectors, ``A`` the oracle's Hessian or Gauss-Newton.

    Self-adjoint. For ``kind="gauss_newton"`` the matrix is positive semi-definite;
    TensorFlow has no flag for that, so ``is_positive_definite`` is set only when
    ``damping > 0`` makes it definite.

    Args:
      oracle: a `CurvatureOracle`.
      kind: ``"hessian"`` or ``"gauss_newton"``.
      damping: a non-negative multiple of the identity to add.
    """

    def __init__(self, oracle, kind: str = "gauss_newton", damping: float = 0.0):
        if kind not in ("hessian", "gauss_newton"):
            raise ValueError(f"`kind` must be 'hessian' or 'gauss_newton', got {kind!r}.")
        if damping < 0:
            raise ValueError(f"`damping` must be >= 0, got {damping}.")
        self._oracle = oracle
        self._kind = kind
        self._damping = damping
        dtype = tf.as_dtype(oracle.variables[0].dtype)
        definite = True if (kind == "gauss_newton" and damping > 0) else None
        super().__init__(
            dtype=dtype,
            is_self_adjoint=True,
            is_positive_definite=definite,
            is_square=True,
            name=f"{kind}_operator",
        )

    def _shape(self):
        n = self._oracle.size
        return tf.TensorShape([n, n])

    def _shape_tensor(self):
        n = self._oracle.size
        return tf.constant([n, n], tf.int32)

    def _apply(self, flat):
        like = self._oracle.variables
        product = self._oracle.curvature_vector_product(vectors.unflatten(flat, like), self._kind)
        return tf.cast(vectors.flatten(product), flat.dtype) + self._damping * flat

    def _matmul(self, x, adjoint=False, adjoint_arg=False):
        if adjoint_arg:
            x = tf.linalg.adjoint(x)
        columns = tf.unstack(x, axis=-1)
        return tf.stack([self._apply(c) for c in columns], axis=-1)
