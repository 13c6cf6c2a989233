"""The oracle interface every optimizer consumes, with its derived methods written once.

Implementations: `CurvatureOracle` (eager tapes; recorded once per point, also
what a graph traces) and `GraphOracle` (each quantity a compiled graph function,
and whole CG solves inside one; the default of ``model.fit`` and `minimize`).
"""

import abc
from typing import Callable, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from ctc_newton.curvature import vectors
from ctc_newton.curvature.operators import CurvatureOperator

KINDS = ("hessian", "gauss_newton")


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}.")


class Oracle(abc.ABC):
    """Loss, gradient and curvature products for a fixed batch at a fixed point.

    Vectors are structured like ``variables``. Subclasses implement the point
    (`linearize`, `value`, `gradient`, `evaluate`), `curvature_vector_product`
    and `solve`; views, Hutchinson diagonals and counters are shared.

    Attributes:
      variables: the variables the loss is a function of.
      num_function_evaluations, num_gradient_evaluations, num_curvature_products:
        counters, as scipy's ``nfev``/``njev``/``nhev``.
    """

    variables: List[tf.Variable]
    num_function_evaluations: int = 0
    num_gradient_evaluations: int = 0
    num_curvature_products: int = 0

    # ------------------------------------------------------------------ point
    @abc.abstractmethod
    def linearize(self) -> "Oracle":
        """Moves the point to the variables' current values; returns self."""

    @abc.abstractmethod
    def value(self) -> tf.Tensor:
        """The loss at the point."""

    @abc.abstractmethod
    def gradient(self) -> List[tf.Tensor]:
        """The gradient at the point."""

    def outputs(self):
        """The model outputs at the point, for an oracle built from a model's outputs.

        Raises:
          ValueError: the oracle's loss is a plain function with no outputs.
        """
        raise ValueError(
            f"{type(self).__name__} records no model outputs: build it from a "
            "Keras model (keras_oracle) or with outputs_fn."
        )

    def keras_batch(self):
        """``(model, loss, (x, y, sample_weight))`` of an oracle built from a Keras model.

        What K-FAC needs beyond the oracle interface: the layers and one batch.

        Raises:
          ValueError: the oracle was not built from a Keras model.
        """
        raise ValueError(
            f"{type(self).__name__} was not built from a Keras model: build it with "
            "keras_oracle(model, loss, x, y) (what model.fit does) for K-FAC."
        )

    def value_and_gradient(self):
        """``(value, gradient)`` at the point."""
        return self.value(), self.gradient()

    @abc.abstractmethod
    def evaluate(self) -> tf.Tensor:
        """The loss at the variables' *current* values, without moving the point."""

    # ------------------------------------------------------------------ curvature
    @property
    @abc.abstractmethod
    def supports_gauss_newton(self) -> bool:
        """Whether Gauss-Newton products exist (the loss has an output/loss split)."""

    @abc.abstractmethod
    def curvature_vector_product(
        self, vector: Sequence[tf.Tensor], kind: str = "gauss_newton"
    ) -> List[tf.Tensor]:
        """The Hessian (``kind="hessian"``) or Gauss-Newton matrix times ``vector``."""

    def prepare_products(self, kind: str = "gauss_newton") -> None:
        """Records what products of ``kind`` at this point share (no-op by default)."""
        return None

    def hessian_vector_product(self, vector: Sequence[tf.Tensor]) -> List[tf.Tensor]:
        """The exact Hessian of the loss times ``vector``."""
        return self.curvature_vector_product(vector, "hessian")

    def gauss_newton_vector_product(self, vector: Sequence[tf.Tensor]) -> List[tf.Tensor]:
        """The generalized Gauss-Newton matrix times ``vector``."""
        return self.curvature_vector_product(vector, "gauss_newton")

    @property
    def supports_residual_jacobian(self) -> bool:
        """Whether the loss is ``1/2 |r|^2`` of residuals whose Jacobian the oracle
        builds (`CurvatureOracle.from_residuals`): dense Levenberg-Marquardt steps."""
        return False

    @property
    @abc.abstractmethod
    def supports_squared_gradients(self) -> bool:
        """Whether `squared_gradient_diagonal` exists (a per-example loss is known)."""

    def squared_gradients_unsupported_reason(self) -> str:
        """Why `squared_gradient_diagonal` is unavailable, and the fix (for messages)."""
        return (
            "Per-example gradients need a per-example loss: build the oracle with "
            "from_keras, or from_outputs(per_example_fn=...)."
        )

    @abc.abstractmethod
    def squared_gradient_diagonal(self) -> List[tf.Tensor]:
        """``sum_i g_i^2`` over the examples' gradients (Martens' preconditioner).

        Raises:
          ValueError: when `supports_squared_gradients` is False.
        """

    @abc.abstractmethod
    def solve(self, key, fn: Callable, *args):
        """``fn(oracle, *args)`` with an oracle at this point: a whole CG solve.

        ``fn`` builds products from the oracle it is given and returns a
        `ctc_newton.optimizers.cg.CGResult` (its ``iterations`` are counted as
        curvature products). A `GraphOracle` runs it inside one graph function
        cached under ``key`` (which must name everything ``fn`` reads besides
        ``args``); a `CurvatureOracle` calls it eagerly on itself.
        """

    # ------------------------------------------------------------------ flat views
    # Optimizers see one flat vector; a `GraphOracle` does each of these in one call.
    def flat_position(self) -> tf.Tensor:
        """The variables' current values as one flat vector."""
        return vectors.flatten([tf.convert_to_tensor(v) for v in self.variables])

    def flat_gradient(self) -> tf.Tensor:
        """The gradient at the point as one flat vector."""
        return vectors.flatten(self.gradient())

    def assign_flat(self, flat: tf.Tensor) -> None:
        """Sets the variables from one flat vector."""
        vectors.assign_flat(self.variables, flat)

    def evaluate_at(self, flat: tf.Tensor) -> tf.Tensor:
        """`evaluate` with the variables set to ``flat`` (left there)."""
        self.assign_flat(flat)
        return self.evaluate()

    # ------------------------------------------------------------------ derived
    @property
    def size(self) -> int:
        """Total number of scalar parameters."""
        return int(sum(v.shape.num_elements() for v in self.variables))

    def hutchinson_diagonal(
        self, kind: str = "gauss_newton", num_samples: int = 10, seed: Optional[int] = None
    ) -> List[tf.Tensor]:
        """Unbiased estimate of the Hessian or Gauss-Newton diagonal, ``E[z * (A z)]``.

        Args:
          kind: ``"hessian"`` or ``"gauss_newton"``.
          num_samples: number of Rademacher probes.
          seed: seed for the probes.

        Returns:
          A structured vector.
        """
        if num_samples < 1:
            raise ValueError(f"`num_samples` must be >= 1, got {num_samples}.")
        rng = (
            tf.random.Generator.from_seed(seed)
            if seed is not None
            else tf.random.Generator.from_non_deterministic_state()
        )
        total = vectors.zeros_like(self.variables)
        for _ in range(num_samples):
            probe = [
                tf.cast(2 * rng.uniform(tf.shape(v), 0, 2, dtype=tf.int32) - 1, v.dtype)
                for v in self.variables
            ]
            product = self.curvature_vector_product(probe, kind)
            total = [t + p * z for t, p, z in zip(total, product, probe)]
        return vectors.scale(1.0 / num_samples, total)

    def as_linear_operator(self, kind: str = "gauss_newton", damping: float = 0.0):
        """A ``tf.linalg.LinearOperator`` over flat vectors: ``A + damping I``."""
        return CurvatureOperator(self, kind, damping)

    def as_scipy_linear_operator(self, kind: str = "gauss_newton", damping: float = 0.0):
        """A ``scipy.sparse.linalg.LinearOperator`` over flat float64 numpy vectors."""
        from scipy.sparse.linalg import LinearOperator

        check_kind(kind)

        def matvec(x):
            x = np.asarray(x, np.float64).reshape(-1)
            product = self.curvature_vector_product(
                vectors.unflatten(tf.constant(x), self.variables), kind
            )
            return vectors.flatten(product).numpy().astype(np.float64) + damping * x

        n = self.size
        return LinearOperator((n, n), matvec=matvec, rmatvec=matvec, dtype=np.float64)
