"""A `CurvatureOracle` seen through flat vectors, with the variables it moves."""

import tensorflow as tf

from ctc_newton.curvature import flatten, unflatten


def check_variables(variables, argument: str = "variables") -> None:
    """Raises ``ValueError`` for no variables or variables of several float dtypes."""
    if not variables:
        raise ValueError(
            f"`{argument}` is empty: there is nothing to optimize; pass the "
            "variables the loss reads (e.g. model.trainable_variables)."
        )
    dtypes = {tf.as_dtype(v.dtype).name for v in variables}
    if len(dtypes) > 1:
        named = ", ".join(
            f"{getattr(v, 'name', '?')}: {tf.as_dtype(v.dtype).name}" for v in variables
        )
        raise ValueError(
            f"`{argument}` mixes dtypes {sorted(dtypes)} ({named}); the "
            "optimizers work on one flat vector of one dtype: create every "
            "variable in the same dtype (e.g. all float64)."
        )


class FlatProblem:
    """Flat-vector access to an oracle's point, products and trial evaluations.

    Args:
      oracle: a `CurvatureOracle`; its variables are what the optimizer moves.
    """

    def __init__(self, oracle):
        self.oracle = oracle
        self.variables = oracle.variables
        check_variables(self.variables)
        self.dtype = tf.as_dtype(self.variables[0].dtype)

    def position(self) -> tf.Tensor:
        return tf.cast(self.oracle.flat_position(), self.dtype)

    def assign(self, flat: tf.Tensor) -> None:
        self.oracle.assign_flat(flat)

    def value(self) -> float:
        return float(self.oracle.value())

    def gradient(self) -> tf.Tensor:
        return tf.cast(self.oracle.flat_gradient(), self.dtype)

    def product(self, kind: str):
        """``v -> A v`` on flat vectors; what the products share is recorded now (in a
        graph: before, not inside, the CG loop that calls it)."""
        self.oracle.prepare_products(kind)

        def apply(v):
            out = self.oracle.curvature_vector_product(unflatten(v, self.variables), kind)
            return tf.cast(flatten(out), self.dtype)

        return apply

    def settle(self, accepted: bool, start: tf.Tensor) -> None:
        """Leaves the variables at the trial point if ``accepted``, else back at ``start``."""
        if not accepted:
            self.assign(start)

    def value_at(self, flat: tf.Tensor) -> float:
        """The loss with the variables set to ``flat`` (left there)."""
        return float(self.oracle.evaluate_at(flat))
