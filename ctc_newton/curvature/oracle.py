"""`CurvatureOracle`: loss, gradient and curvature products of one batch at one point.

The tape implementation of the `ctc_newton.curvature.base.Oracle` interface, and
the builders (`from_function`, `from_outputs`, `from_keras`). The oracle
*linearizes* once: it records the forward pass (and what each product
needs) on persistent tapes, so the dozens of products of a CG solve run only
backward passes and never re-run the model, re-sample dropout or touch BatchNorm
statistics again. Used inside one ``tf.function`` trace, the recording becomes
graph structure and each product is a fixed set of ops; that is what
`compiled` (a `ctc_newton.curvature.graph.GraphOracle`) does once per loss.

Products:
- exact Hessian: reverse-over-reverse through the whole loss;
- generalized Gauss-Newton ``J^T H_out J v`` (+ the exact Hessian of the weight
  regularizers): ``J v`` by the double-VJP trick, ``H_out`` by differentiating
  the output loss twice w.r.t. the outputs (with each loss that registered one
  switched to its PSD form, see `ctc_newton.curvature.output_curvature`),
  ``J^T`` by one VJP. PSD whenever the output loss is convex in the outputs (CTC's
  Gauss-Newton, cross-entropy from logits, MSE).
"""

import functools
import math
from typing import Callable, List, Optional, Sequence

import keras
import tensorflow as tf

from ctc_newton._keras_adapter import LossFunctionWrapper, scale_loss_for_distribution
from ctc_newton.curvature import vectors
from ctc_newton.curvature.base import Oracle, check_kind
from ctc_newton.curvature.graph import GraphFunctions, GraphOracle
from ctc_newton.curvature.output_curvature import gauss_newton_output_curvature

__all__ = ["CurvatureOracle", "as_keras_loss"]


def _copy_with_mask(tensor):
    """A tape-independent copy of an output that keeps its Keras mask."""
    copy = tf.identity(tf.stop_gradient(tensor))
    mask = getattr(tensor, "_keras_mask", None)
    if mask is not None:
        try:
            copy._keras_mask = mask
        except AttributeError:  # some tensor types do not take attributes
            pass
    return copy


def _replica_sum(value):
    """Sums a value (or a list) over the replicas of a ``tf.distribute`` strategy.

    Each replica's oracle sees its shard of the global batch with the loss scaled by
    ``1 / num_replicas`` (as Keras does); the sum is the global-batch quantity.
    Outside a multi-replica context it is the identity.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def as_keras_loss(loss) -> keras.losses.Loss:
    """A Keras ``Loss`` object for what ``compile(loss=...)`` accepts.

    Raises:
      TypeError: ``loss`` is neither a Keras loss, a function nor a name.
    """
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if not isinstance(loss, keras.losses.Loss):
        if not callable(loss):
            raise TypeError(f"`loss` must be a Keras loss, a function or a name; got {loss!r}.")
        loss = LossFunctionWrapper(loss)  # what compile() wraps a function with
    return loss


class CurvatureOracle(Oracle):
    """Loss, gradient and curvature products for a fixed batch at a fixed point, on tapes.

    Vectors are structured like ``variables`` (lists of tensors of their shapes);
    `ctc_newton.curvature.flatten`/`unflatten` convert for flat-vector users.

    Build it with `from_keras`, `from_function` or `from_outputs`. After the
    variables change, call `linearize` (or build a new oracle) to move the point.

    Args:
      variables: the ``tf.Variable``s the loss is a function of.
      loss_fn: ``() -> scalar`` the whole loss (Hessian products only), or None.
      outputs_fn: ``() -> outputs`` the model outputs (any nest of tensors).
      output_loss_fn: ``outputs -> scalar`` the loss of the outputs.
      regularization_fn: ``() -> scalar`` loss terms of the weights alone (e.g.
        ``model.losses``), evaluated after ``outputs_fn``.
      per_example_fn: ``outputs -> [B]`` each example's contribution to the
        loss (for the squared-gradient diagonal), or None.
      restore_variables: variables whose values the forward pass may change as a
        side effect (BatchNorm statistics) and that linearizing must leave alone.
      residuals: the outputs are a residual vector ``r`` and the output loss is
        ``1/2 |r|^2`` (set by `from_residuals`; enables `residual_jacobian`).
    """

    _keras: Optional[tuple] = None  # (model, loss, batch) when built by from_keras

    def __init__(
        self,
        variables: Sequence[tf.Variable],
        *,
        loss_fn: Optional[Callable[[], tf.Tensor]] = None,
        outputs_fn: Optional[Callable[[], object]] = None,
        output_loss_fn: Optional[Callable[[object], tf.Tensor]] = None,
        regularization_fn: Optional[Callable[[], tf.Tensor]] = None,
        per_example_fn: Optional[Callable[[object], tf.Tensor]] = None,
        restore_variables: Sequence[tf.Variable] = (),
        residuals: bool = False,
    ):
        self.variables = list(variables)
        # Tapes take the backing tf.Variable of a Keras variable (its own dtype is a string,
        # which breaks zero-filled unconnected gradients).
        self._sources = [v.value if isinstance(v, keras.Variable) else v for v in self.variables]
        if not self.variables:
            raise ValueError("`variables` is empty: the oracle needs at least one variable.")
        if (loss_fn is None) == (outputs_fn is None):
            raise ValueError("Give either `loss_fn` or `outputs_fn` with `output_loss_fn`.")
        if outputs_fn is not None and output_loss_fn is None:
            raise ValueError("`outputs_fn` needs `output_loss_fn`.")
        self._loss_fn = loss_fn
        self._outputs_fn = outputs_fn
        self._output_loss_fn = output_loss_fn
        self._regularization_fn = regularization_fn
        self._per_example_fn = per_example_fn
        self._restore = list(restore_variables)
        self._residuals = residuals
        self.num_function_evaluations = 0
        self.num_gradient_evaluations = 0
        self.num_curvature_products = 0
        self.linearize()

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_function(
        cls, fn: Callable[[], tf.Tensor], variables: Sequence[tf.Variable]
    ) -> "CurvatureOracle":
        """An oracle for any twice-differentiable scalar function of ``variables``.

        Args:
          fn: ``() -> scalar`` reading the variables.
          variables: the variables.

        Returns:
          A `CurvatureOracle` with value, gradient, Hessian products and the
          Hutchinson diagonal (no Gauss-Newton: that needs an output/loss split,
          see `from_outputs`).
        """
        return cls(variables, loss_fn=fn)

    @classmethod
    def from_outputs(
        cls,
        outputs_fn: Callable[[], object],
        output_loss_fn: Callable[[object], tf.Tensor],
        variables: Sequence[tf.Variable],
        *,
        regularization_fn: Optional[Callable[[], tf.Tensor]] = None,
        per_example_fn=None,
    ) -> "CurvatureOracle":
        """An oracle for ``output_loss_fn(outputs_fn())``, with Gauss-Newton products.

        Args:
          outputs_fn: ``() -> outputs``, e.g. a model applied to a batch.
          output_loss_fn: ``outputs -> scalar``; its Hessian w.r.t. the outputs is
            the middle of the Gauss-Newton matrix (for `ctc_newton.ctc_loss`, its
            PSD Gauss-Newton).
          variables: the variables.
          regularization_fn: ``() -> scalar`` terms of the weights alone.
          per_example_fn: ``outputs -> [B]`` per-example loss contributions.

        Returns:
          A `CurvatureOracle`.
        """
        return cls(
            variables,
            outputs_fn=outputs_fn,
            output_loss_fn=output_loss_fn,
            regularization_fn=regularization_fn,
            per_example_fn=per_example_fn,
        )

    @classmethod
    def from_residuals(
        cls,
        residual_fn: Callable[[], object],
        variables: Sequence[tf.Variable],
        *,
        weights: Optional[Sequence[float]] = None,
    ) -> "CurvatureOracle":
        """An oracle for the least-squares loss ``1/2 sum_k w_k |r_k|^2`` of residuals.

        The residuals may be any number of tensors of any shapes (a PDE residual at
        collocation points, boundary terms, data misfits), each with its weight.
        Gauss-Newton products are ``J^T W J v``; `residual_jacobian` gives the dense
        Jacobian for Levenberg-Marquardt on problems with few parameters.

        Args:
          residual_fn: ``() -> tensor or list of tensors`` reading ``variables``.
          variables: the variables.
          weights: one non-negative weight per residual tensor (default: all 1).

        Returns:
          A `CurvatureOracle` (``supports_residual_jacobian``).

        Raises:
          ValueError: a negative or non-finite weight, or as many weights as
            residual tensors not given.
        """
        if weights is not None:
            weights = [float(w) for w in weights]
            if not all(math.isfinite(w) and w >= 0 for w in weights):
                raise ValueError(f"`weights` must be finite and >= 0, got {weights}.")
        dtype = tf.as_dtype(list(variables)[0].dtype) if variables else tf.float32

        def residual_vector():
            residuals = residual_fn()
            residuals = list(residuals) if isinstance(residuals, (list, tuple)) else [residuals]
            if weights is not None and len(weights) != len(residuals):
                raise ValueError(
                    f"`weights` has {len(weights)} entries for "
                    f"{len(residuals)} residual tensors; give one per tensor."
                )
            scales = [1.0] * len(residuals) if weights is None else [math.sqrt(w) for w in weights]
            return tf.concat(
                [
                    scale * tf.reshape(tf.cast(r, dtype), [-1])
                    for scale, r in zip(scales, residuals)
                ],
                axis=0,
            )

        return cls(
            variables,
            outputs_fn=residual_vector,
            output_loss_fn=lambda r: 0.5 * tf.reduce_sum(tf.square(r)),
            residuals=True,
        )

    @classmethod
    def from_keras(
        cls, model, loss, x, y, sample_weight=None, *, training: bool = True
    ) -> "CurvatureOracle":
        """A tape oracle for a Keras model, a loss and one batch, as ``model.fit`` sees it.

        The value is ``loss(y, model(x, training), sample_weight) + sum(model.losses)``
        with the loss's own reduction (Keras' default: mean over the batch), so the
        gradient equals the one ``fit`` computes. Masks of the model output reach
        the loss. Dropout masks are drawn once per linearization; BatchNorm
        statistics are left as they were.

        Executed eagerly, every op is dispatched from Python: for speed use
        `ctc_newton.curvature.keras_oracle` (compiled by default); this tape oracle
        is what its graphs trace, and the one to step through in a debugger.

        Args:
          model: a built Keras 3 model (Sequential, functional or subclassed).
          loss: a ``keras.losses.Loss``, a loss function, or a name Keras knows.
          x: the inputs of the batch.
          y: the targets of the batch.
          sample_weight: optional ``[B]`` weights.
          training: the ``training`` flag of the forward pass.

        Returns:
          A `CurvatureOracle` over ``model.trainable_variables``.

        Raises:
          ValueError: the model has no trainable variables (not built).
          TypeError: ``loss`` is not a loss.
        """
        loss = as_keras_loss(loss)
        if not model.trainable_variables:
            raise ValueError(
                "`model` has no trainable variables; build it (call it once) "
                "before making an oracle."
            )

        def per_example(outputs):
            config = dict(loss.get_config(), reduction=None)
            unreduced = type(loss).from_config(config)
            values = unreduced(y, outputs)
            values = tf.reshape(values, [tf.shape(values)[0], -1])
            if sample_weight is not None:
                values = values * tf.cast(tf.reshape(sample_weight, [-1, 1]), values.dtype)
            # "sum_over_batch_size": the batch mean; "sum": the sum.
            if loss.reduction == "sum":
                return tf.reduce_sum(values, axis=1)
            # Keras scales a mean-reduced loss by 1 / replicas (the sum of the shares).
            count = tf.cast(tf.size(values), values.dtype)
            return scale_loss_for_distribution(tf.reduce_sum(values, axis=1) / count)

        def regularization():
            return scale_loss_for_distribution(tf.add_n(model.losses))

        # Under a strategy Keras losses already divide each replica's share by the replica
        # count, so the all-reduced sum is the global-batch mean; the regularizers are
        # divided here the same way.
        oracle = cls(
            model.trainable_variables,
            outputs_fn=lambda: model(x, training=training),
            output_loss_fn=lambda outputs: loss(y, outputs, sample_weight),
            regularization_fn=regularization if model.losses else None,
            per_example_fn=per_example,
            restore_variables=model.non_trainable_variables,
        )
        oracle._keras = (model, loss, (x, y, sample_weight))
        return oracle

    def keras_batch(self):
        return self._keras if self._keras is not None else super().keras_batch()

    # ------------------------------------------------------------------ point
    def linearize(self) -> "CurvatureOracle":
        """Records the loss at the variables' current values; products reuse it.

        Returns:
          self.
        """
        saved = [tf.identity(tf.convert_to_tensor(v)) for v in self._restore]
        with tf.GradientTape(persistent=True) as tape:
            if self._outputs_fn is not None:
                assert self._output_loss_fn is not None  # checked in __init__
                outputs = self._outputs_fn()
                data_loss = self._output_loss_fn(outputs)
                regularization = (
                    self._regularization_fn() if self._regularization_fn is not None else None
                )
                loss = (
                    data_loss
                    if regularization is None
                    else data_loss + tf.cast(regularization, data_loss.dtype)
                )
            else:
                assert self._loss_fn is not None  # checked in __init__
                outputs, regularization = None, None
                loss = self._loss_fn()
        for variable, value in zip(self._restore, saved):
            variable.assign(value)
        if loss.shape.rank != 0:
            raise ValueError(f"The loss must be a scalar, got shape {loss.shape}.")
        self._tape = tape
        self._outputs = outputs
        self._loss = loss
        self._gradient: Optional[List[tf.Tensor]] = None
        # What products at this point reuse, recorded on first use.
        self._hessian_tape: Optional[tuple] = None
        self._jvp: Optional[tuple] = None
        self._output_hessian: Optional[tuple] = None
        self._regularization_hessian: Optional[tuple] = None
        self.num_function_evaluations += 1
        return self

    def value(self) -> tf.Tensor:
        """The loss at the linearization point (summed over replicas under a strategy)."""
        return _replica_sum(self._loss)

    def gradient(self) -> List[tf.Tensor]:
        """The gradient at the linearization point (computed once)."""
        if self._gradient is None:
            self._gradient = _replica_sum(
                self._tape.gradient(
                    self._loss, self._sources, unconnected_gradients=tf.UnconnectedGradients.ZERO
                )
            )
            self.num_gradient_evaluations += 1
        return self._gradient

    def value_and_gradient(self):
        """``(value, gradient)`` at the linearization point."""
        return self.value(), self.gradient()

    def _current_loss(self) -> tf.Tensor:
        """The loss at the variables' current values; restore-variables put back."""
        saved = [tf.identity(tf.convert_to_tensor(v)) for v in self._restore]
        if self._outputs_fn is not None:
            assert self._output_loss_fn is not None  # checked in __init__
            value = self._output_loss_fn(self._outputs_fn())
            if self._regularization_fn is not None:
                value = value + tf.cast(self._regularization_fn(), value.dtype)
        else:
            assert self._loss_fn is not None  # checked in __init__
            value = self._loss_fn()
        with tf.control_dependencies([value]):
            for variable, old in zip(self._restore, saved):
                variable.assign(old)
        return value

    def evaluate(self) -> tf.Tensor:
        """The loss at the variables' *current* values, without moving the point.

        For line searches and trust-region ratios: one forward pass, no tape.
        """
        value = self._current_loss()
        self.num_function_evaluations += 1
        return _replica_sum(value)

    def current_value_and_gradient(self):
        """``(loss, gradient)`` at the variables' current values, computed afresh.

        Unlike `value_and_gradient` it neither reads nor moves the linearization
        point and counts nothing: a pure computation that can be traced into a
        ``tf.function`` (compiled full-batch loops such as L-BFGS's; they count
        their own evaluations).

        Returns:
          ``(scalar, list of tensors shaped like the variables)``.
        """
        with tf.GradientTape() as tape:
            loss = self._current_loss()
        gradient = tape.gradient(
            loss, self._sources, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return _replica_sum(loss), [_replica_sum(g) for g in gradient]

    # ------------------------------------------------------------------ products
    def _check(self, vector):
        return vectors.structured_like(vector, self._sources)

    def hessian_vector_product(self, vector: Sequence[tf.Tensor]) -> List[tf.Tensor]:
        """The exact Hessian of the loss times ``vector`` (reverse-over-reverse).

        The first product at a point records the gradient on a persistent tape
        (one more forward and backward pass); each product after that is one
        backward pass through that recording.
        """
        vector = self._check(vector)
        outer, gradient = self._hessian_recording()
        self.num_curvature_products += 1
        return _replica_sum(
            outer.gradient(
                gradient,
                self._sources,
                output_gradients=vector,
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
        )

    def _hessian_recording(self):
        if self._hessian_tape is None:
            saved = [tf.identity(tf.convert_to_tensor(v)) for v in self._restore]
            with tf.GradientTape(persistent=True) as outer:
                with tf.GradientTape() as inner:
                    loss = self._total_loss_for_hessian()
                gradient = inner.gradient(
                    loss, self._sources, unconnected_gradients=tf.UnconnectedGradients.ZERO
                )
            for variable, value in zip(self._restore, saved):
                variable.assign(value)
            self._hessian_tape = (outer, gradient)
        return self._hessian_tape

    def prepare_products(self, kind: str = "gauss_newton") -> None:
        """Records now what every product of ``kind`` at this point reuses.

        Products record it on first use anyway; in a graph, a CG loop calls this
        first so that the recording is computed once, outside the loop body
        (TensorFlow does not hoist loop invariants out of a ``while_loop``).
        """
        check_kind(kind)
        if kind == "hessian":
            self._hessian_recording()
            return
        self._require_outputs()
        self._jvp_recording()
        self._output_hessian_recording()
        self._regularization_recording()

    def _total_loss_for_hessian(self):
        if self._outputs_fn is None:
            assert self._loss_fn is not None  # checked in __init__
            return self._loss_fn()
        assert self._output_loss_fn is not None  # checked in __init__
        loss = self._output_loss_fn(self._outputs_fn())
        if self._regularization_fn is not None:
            loss = loss + tf.cast(self._regularization_fn(), loss.dtype)
        return loss

    def residual_jacobian(self):
        """``(J, r)``: the Jacobian ``[m, n]`` of the (weighted) residual vector at the
        point w.r.t. the flat variables, and the residuals ``[m]``.

        Raises:
          ValueError: the oracle was not built with `from_residuals`.
        """
        if not self._residuals:
            raise ValueError(
                "The residual Jacobian needs a least-squares oracle: build it "
                "with CurvatureOracle.from_residuals."
            )
        jacobians = self._tape.jacobian(
            self._outputs, self._sources, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        rows = tf.shape(self._outputs)[0]
        return (
            _replica_sum(tf.concat([tf.reshape(j, [rows, -1]) for j in jacobians], 1)),
            self._outputs,
        )

    @property
    def supports_residual_jacobian(self) -> bool:
        return self._residuals

    def outputs(self):
        """The model outputs recorded at the point (their Keras mask attached).

        Raises:
          ValueError: the oracle was built from a plain function (no outputs).
        """
        self._require_outputs()
        return self._outputs

    def _require_outputs(self):
        if self._outputs is None:
            raise ValueError(
                "Gauss-Newton products need the model outputs: build the "
                "oracle with from_keras or from_outputs, not from_function."
            )

    def jacobian_vector_product(self, vector: Sequence[tf.Tensor]):
        """``J v``: the change of the outputs along ``vector`` (double-VJP trick)."""
        self._require_outputs()
        vector = self._check(vector)
        tape, dummy, transposed = self._jvp_recording()
        return tape.gradient(
            transposed,
            dummy,
            output_gradients=vector,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )

    def _jvp_recording(self):
        if self._jvp is None:
            dummy = tf.nest.map_structure(tf.zeros_like, self._outputs)
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(dummy)
                transposed = self._tape.gradient(
                    self._outputs,
                    self._sources,
                    output_gradients=dummy,
                    unconnected_gradients=tf.UnconnectedGradients.ZERO,
                )
            self._jvp = (tape, dummy, transposed)
        return self._jvp

    def vector_jacobian_product(self, output_vector) -> List[tf.Tensor]:
        """``J^T u`` for ``u`` shaped like the outputs."""
        self._require_outputs()
        return self._tape.gradient(
            self._outputs,
            self._sources,
            output_gradients=output_vector,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )

    def output_hessian_product(self, output_vector):
        """``H_out u``: the curvature of the output loss w.r.t. the outputs (PSD form)."""
        self._require_outputs()
        outer, outputs, gradient = self._output_hessian_recording()
        return outer.gradient(
            gradient,
            outputs,
            output_gradients=output_vector,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )

    def _output_hessian_recording(self):
        if self._output_hessian is None:
            outputs = tf.nest.map_structure(_copy_with_mask, self._outputs)
            with tf.GradientTape(persistent=True) as outer:
                outer.watch(outputs)
                with tf.GradientTape() as inner:
                    inner.watch(outputs)
                    with gauss_newton_output_curvature():
                        assert self._output_loss_fn is not None  # checked in __init__
                        loss = self._output_loss_fn(outputs)
                gradient = inner.gradient(loss, outputs)
            self._output_hessian = (outer, outputs, gradient)
        return self._output_hessian

    def _regularization_recording(self):
        if self._regularization_fn is not None and self._regularization_hessian is None:
            with tf.GradientTape(persistent=True) as outer:
                with tf.GradientTape() as inner:
                    value = self._regularization_fn()
                gradient = inner.gradient(
                    value, self._sources, unconnected_gradients=tf.UnconnectedGradients.ZERO
                )
            self._regularization_hessian = (outer, gradient)
        return self._regularization_hessian

    def _regularization_product(self, vector):
        if self._regularization_fn is None:
            return None
        outer, gradient = self._regularization_recording()
        return outer.gradient(
            gradient,
            self._sources,
            output_gradients=vector,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )

    def gauss_newton_vector_product(self, vector: Sequence[tf.Tensor]) -> List[tf.Tensor]:
        """The generalized Gauss-Newton ``J^T H_out J v`` (+ regularizers' Hessian).

        Raises:
          ValueError: the oracle was built from a plain function (no outputs).
        """
        vector = self._check(vector)
        product = self.vector_jacobian_product(
            self.output_hessian_product(self.jacobian_vector_product(vector))
        )
        regularization = self._regularization_product(vector)
        if regularization is not None:
            product = vectors.add_scaled(product, 1.0, regularization)
        self.num_curvature_products += 1
        return _replica_sum(product)

    def curvature_vector_product(self, vector, kind: str = "gauss_newton"):
        """`hessian_vector_product` or `gauss_newton_vector_product` by name."""
        check_kind(kind)
        if kind == "hessian":
            return self.hessian_vector_product(vector)
        return self.gauss_newton_vector_product(vector)

    # ------------------------------------------------------------------ diagonals
    def squared_gradient_diagonal(self) -> List[tf.Tensor]:
        """``sum_i g_i^2`` over the examples' gradients (Martens' preconditioner).

        Raises:
          ValueError: no per-example structure (an oracle from `from_function`).
        """
        if self._per_example_fn is None or self._outputs_fn is None:
            raise ValueError(self.squared_gradients_unsupported_reason())
        with tf.GradientTape() as tape:
            contributions = self._per_example_fn(self._outputs_fn())
        try:
            jacobians = tape.jacobian(
                contributions, self._sources, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
        except (ValueError, NotImplementedError, tf.errors.OpError):
            with tf.GradientTape() as tape:
                contributions = self._per_example_fn(self._outputs_fn())
            jacobians = tape.jacobian(
                contributions,
                self._sources,
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
                experimental_use_pfor=False,
            )
        return _replica_sum([tf.reduce_sum(tf.square(j), axis=0) for j in jacobians])

    # ------------------------------------------------------------------ compiled use
    @property
    def supports_gauss_newton(self) -> bool:
        return self._outputs_fn is not None

    @property
    def supports_squared_gradients(self) -> bool:
        return self._per_example_fn is not None and self._outputs_fn is not None

    def solve(self, key, fn, *args):
        """``fn(self, *args)``, eagerly (see `Oracle.solve`)."""
        return fn(self, *args)

    def compiled(self) -> "Oracle":
        """A `GraphOracle` over the same loss and variables: each quantity, and each
        `solve`, one graph function (traced once per oracle, reused by every point).

        Returns:
          The `GraphOracle`, linearized at the variables' current values.
        """
        if getattr(self, "_graph_functions", None) is None:
            make = functools.partial(
                CurvatureOracle,
                self.variables,
                loss_fn=self._loss_fn,
                outputs_fn=self._outputs_fn,
                output_loss_fn=self._output_loss_fn,
                regularization_fn=self._regularization_fn,
                per_example_fn=self._per_example_fn,
                restore_variables=self._restore,
                residuals=self._residuals,
            )
            self._graph_functions = GraphFunctions(make, self.variables)
        return GraphOracle(
            self._graph_functions,
            self.variables,
            restore=self._restore,
            supports_gauss_newton=self.supports_gauss_newton,
            supports_squared_gradients=self.supports_squared_gradients,
            supports_residual_jacobian=self.supports_residual_jacobian,
        )
