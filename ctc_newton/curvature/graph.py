"""`GraphOracle`: every quantity of an oracle, and whole CG solves, as graph functions.

Executed eagerly, a `CurvatureOracle` dispatches every op of each double backward
pass from Python. `GraphFunctions` traces, once per loss, graph functions that
take the batch (and a vector, or a solver's arguments) and rebuild the tape
oracle inside the graph; the batch changing never retraces. A product called on
its own re-runs the forward pass as compiled code; a `GraphOracle.solve` runs a
whole CG loop (`ctc_newton.optimizers.cg`) in one call, its products sharing one
linearization, with one host sync at the end.

State that a forward pass may change as a side effect (BatchNorm statistics, the
random-generator state behind dropout) is put back before and after each call,
so every quantity at a point sees the same forward pass.
"""

from typing import Callable, Dict, Sequence

import tensorflow as tf

from ctc_newton.curvature import vectors
from ctc_newton.curvature.base import Oracle, check_kind


class GraphFunctions:
    """Graph functions of ``(batch, ...)`` over tape oracles built by ``make(*batch)``.

    Args:
      make: ``(*batch) -> CurvatureOracle`` at the variables' current values;
        called inside the traces only.
      variables: the variables the oracles are over (for the flat-vector functions).
    """

    def __init__(self, make: Callable, variables: Sequence[tf.Variable]):
        self.make = make

        def assign(flat):
            vectors.assign_flat(variables, flat)

        def value(batch):
            return make(*batch).value()

        def product(batch, vector, kind):
            return make(*batch).curvature_vector_product(vector, kind)

        def squared_gradients(batch):
            return make(*batch).squared_gradient_diagonal()

        def flat_value_and_gradient(batch):
            value, gradient = make(*batch).value_and_gradient()
            return value, gradient, vectors.flatten(gradient)

        def evaluate_at(batch, flat):
            assign(flat)
            return make(*batch).value()

        def position():
            return vectors.flatten([tf.convert_to_tensor(v) for v in variables])

        options = dict(reduce_retracing=True, autograph=False)
        self.value_and_gradient = tf.function(flat_value_and_gradient, **options)
        self.value = tf.function(value, **options)
        self.product = tf.function(product, **options)
        self.squared_gradients = tf.function(squared_gradients, **options)
        self.evaluate_at = tf.function(evaluate_at, **options)
        self.position = tf.function(position, **options)
        self.assign = tf.function(assign, **options)
        self._solvers: Dict[object, Callable] = {}

    def solver(self, key, fn: Callable):
        """The graph function ``(batch, args) -> fn(make(*batch), *args)`` for ``key``."""
        if key not in self._solvers:
            make = self.make
            self._solvers[key] = tf.function(
                lambda batch, args: fn(make(*batch), *args), reduce_retracing=True, autograph=False
            )
        return self._solvers[key]


class GraphOracle(Oracle):
    """The oracle interface over `GraphFunctions` for one batch.

    Built by ``CurvatureOracle.compiled()``, `ctc_newton.curvature.keras_oracle`
    (what ``model.fit`` uses) and by `minimize`.

    Args:
      functions: the `GraphFunctions` of the loss.
      variables: the variables the loss reads.
      batch: the tensors the functions take (``()`` for a closed-over loss).
      restore: variables a forward pass may change as a side effect.
      supports_gauss_newton: whether the loss has an output/loss split.
      supports_squared_gradients: whether a per-example loss is known.
      supports_residual_jacobian: whether the loss is least squares of residuals
        (the tape oracles inside `solve` then give `residual_jacobian`).
    """

    def __init__(
        self,
        functions: GraphFunctions,
        variables: Sequence[tf.Variable],
        *,
        batch=(),
        restore: Sequence[tf.Variable] = (),
        supports_gauss_newton: bool = True,
        supports_squared_gradients: bool = True,
        supports_residual_jacobian: bool = False,
    ):
        self.variables = list(variables)
        self._functions = functions
        self._batch = tuple(batch)
        self._restore = list(restore)
        self._gauss_newton = supports_gauss_newton
        self._squared_gradients = supports_squared_gradients
        self._residual_jacobian = supports_residual_jacobian
        self.num_function_evaluations = 0
        self.num_gradient_evaluations = 0
        self.num_curvature_products = 0
        self.linearize()

    @property
    def supports_gauss_newton(self) -> bool:
        return self._gauss_newton

    @property
    def supports_squared_gradients(self) -> bool:
        return self._squared_gradients

    @property
    def supports_residual_jacobian(self) -> bool:
        return self._residual_jacobian

    # Every call starts from the side-effect state at the point and leaves it so.
    def _call(self, fn, *args):
        for variable, value in zip(self._restore, self._saved):
            variable.assign(value)
        try:
            return self._invoke(fn, *args)
        finally:
            for variable, value in zip(self._restore, self._saved):
                variable.assign(value)

    def _invoke(self, fn, *args):
        return fn(self._batch, *args)

    def linearize(self) -> "GraphOracle":
        self._saved = [tf.identity(tf.convert_to_tensor(v)) for v in self._restore]
        self._value, self._gradient = None, None
        self.num_function_evaluations += 1
        return self

    def _value_and_gradient(self):
        if self._gradient is None:  # extras: what a subclass's function returns beside them
            self._value, self._gradient, self._flat_gradient, *self._extras = self._call(
                self._functions.value_and_gradient
            )
            self.num_gradient_evaluations += 1
        return self._value, self._gradient

    def flat_gradient(self):
        self._value_and_gradient()
        return self._flat_gradient

    def flat_position(self):
        return self._functions.position()

    def assign_flat(self, flat):
        self._functions.assign(flat)

    def evaluate_at(self, flat):
        self.num_function_evaluations += 1
        return self._call(self._functions.evaluate_at, flat)

    def value(self):
        return self._value_and_gradient()[0]

    def gradient(self):
        return self._value_and_gradient()[1]

    def value_and_gradient(self):
        return self._value_and_gradient()

    def evaluate(self):
        self.num_function_evaluations += 1
        return self._call(self._functions.value)

    def curvature_vector_product(self, vector, kind: str = "gauss_newton"):
        check_kind(kind)
        self.num_curvature_products += 1
        return self._call(
            self._functions.product, vectors.structured_like(vector, self.variables), kind
        )

    def squared_gradient_diagonal(self):
        if not self.supports_squared_gradients:
            raise ValueError(self.squared_gradients_unsupported_reason())
        return self._call(self._functions.squared_gradients)

    def solve(self, key, fn, *args):
        """``fn`` on an oracle at this point, the whole solve in one graph function."""
        result = self._call(self._functions.solver(key, fn), args)
        self.num_curvature_products += int(result.iterations)
        return result
