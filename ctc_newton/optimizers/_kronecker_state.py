"""K-FAC's factor state kept in an optimizer's variables: what `KFAC` and the K-FAC
preconditioner of Hessian-free and Gauss-Newton share.

The averaged block statistics and their eigendecompositions depend on the model's
layers, which an optimizer's ``build`` does not see, so their variables are made
at the first step. `SecondOrderOptimizer.load_own_variables` keeps saved values
for them until then, and `KroneckerState.ensure` assigns them.
"""

from typing import Any, List, Optional

import numpy as np
import tensorflow as tf

from ctc_newton.curvature import flatten, unflatten
from ctc_newton.curvature.kronecker import KroneckerFactors


class KroneckerState:
    """Running averages of the Kronecker statistics and their eigendecompositions.

    Args:
      optimizer: the `SecondOrderOptimizer` whose variables hold the state.
      statistics_decay: running-average decay (``min(1 - 1/k, decay)`` at update k).
      inverse_update_period: updates between eigendecompositions.
      exact: exact-in-the-classes statistics (see `KroneckerFactors`).
      seed: seed of the sampled output classes.
    """

    def __init__(self, optimizer, statistics_decay, inverse_update_period, exact, seed):
        self.optimizer = optimizer
        self.decay = statistics_decay
        self.period = inverse_update_period
        self.exact = exact
        self.seed = seed
        self.factors: Any = None  # the model's KroneckerFactors, made by ensure
        self.averages: List[List[Any]] = []
        self.eigen: List[List[Any]] = []
        self.updates: Any = None

    def ensure(self, oracle) -> KroneckerFactors:
        """The model's `KroneckerFactors`, making the state variables the first time.

        Raises:
          ValueError: the oracle is not of a Keras model, the optimizer was used with
            another model, or saved state does not fit this model's layers.
        """
        model, loss, _ = oracle.keras_batch()
        name = self.optimizer.name
        if self.factors is not None:
            if self.factors.model is not model:
                raise ValueError(
                    f"{name} was used with another model: its K-FAC factors are of one "
                    "model's layers; make a new optimizer for this model."
                )
            return self.factors
        factors = KroneckerFactors(model, loss, exact=self.exact)
        dtype = factors.dtype.name
        add = self.optimizer.add_variable
        for n, block in enumerate(factors.blocks):
            self.averages.append(
                [
                    add(shape, dtype=dtype, name=f"factor_{n}_{i}")
                    for i, shape in enumerate(block.factor_shapes())
                ]
            )
        for n, block in enumerate(factors.blocks):
            self.eigen.append(
                [
                    add(shape, dtype=dtype, name=f"eigen_{n}_{i}")
                    for i, shape in enumerate(block.eigen_shapes())
                ]
            )
        self.updates = add((), dtype="float64", name="statistics_updates")
        self._restore_saved()
        self.factors = factors
        self._average_in = tf.function(self._average, autograph=False)
        self._refresh = tf.function(self._eigen_of_averages, autograph=False)
        self._inverse = tf.function(self._apply_inverse, autograph=False)
        return factors

    def _restore_saved(self):
        saved: Optional[List[np.ndarray]] = self.optimizer._deferred_state
        if saved is None:
            return
        state = [v for group in self.averages + self.eigen for v in group] + [self.updates]
        if len(state) != len(saved) or any(tuple(v.shape) != s.shape for v, s in zip(state, saved)):
            raise ValueError(
                f"The saved state of {self.optimizer.name} does not match this model's "
                f"layers ({len(saved)} saved factor tensors, {len(state)} here)."
            )
        for variable, value in zip(state, saved):
            variable.assign(value)
        self.optimizer._deferred_state = None

    # ------------------------------------------------------------------ update
    def statistics(self, oracle, step: int):
        """One batch's statistics, the forward pass's side effects undone."""
        model, _, (x, y, sample_weight) = oracle.keras_batch()
        saved = [tf.identity(tf.convert_to_tensor(v)) for v in model.non_trainable_variables]
        seed = tf.constant([self.seed % (2**31 - 1), step], tf.int32)
        strategy = getattr(oracle, "strategy", None)  # a DistributedKerasOracle
        try:
            if strategy is None:
                return self.factors.statistics(x, y, sample_weight, seed)
            with strategy.scope():  # each replica's shard, all-reduced
                result = strategy.run(self.factors.statistics, args=(x, y, sample_weight, seed))
            return tf.nest.map_structure(
                lambda r: strategy.experimental_local_results(r)[0], result
            )
        finally:
            for variable, value in zip(model.non_trainable_variables, saved):
                variable.assign(value)

    def update(self, oracle, step: int) -> Optional[str]:
        """Folds a batch's statistics in and refreshes the eigendecompositions when due.

        Returns:
          None, or why the update failed (nothing was changed by non-finite
          statistics; non-finite eigendecompositions keep the previous ones).
        """
        self.ensure(oracle)
        statistics = self.statistics(oracle, step)
        if not all(bool(tf.reduce_all(tf.math.is_finite(t))) for g in statistics for t in g):
            return "non-finite curvature statistics"
        count = float(np.asarray(self.updates))
        decay = min(1 - 1 / (count + 1), self.decay)
        self._average_in(statistics, tf.constant(decay, self.factors.dtype))
        self.updates.assign_add(1.0)
        if count % self.period == 0 and not bool(self._refresh()):
            return "non-finite eigendecomposition"
        return None

    def _average(self, statistics, decay):
        for averages, new in zip(self.averages, statistics):
            for average, value in zip(averages, new):
                average.assign(decay * average + (1 - decay) * value)

    def _eigen_of_averages(self):
        results = [
            block.eigen([tf.convert_to_tensor(a) for a in averages])
            for block, averages in zip(self.factors.blocks, self.averages)
        ]
        finite = tf.reduce_all(
            [tf.reduce_all(tf.math.is_finite(t)) for group in results for t in group]
        )
        for variables, values in zip(self.eigen, results):
            for variable, value in zip(variables, values):
                variable.assign(tf.where(finite, value, variable))
        return finite

    # ------------------------------------------------------------------ inverse
    def _apply_inverse(self, flat, damping):
        variables = self.factors.model.trainable_variables
        dtype = self.factors.dtype
        eigen = [[tf.convert_to_tensor(v) for v in group] for group in self.eigen]
        vectors = unflatten(tf.cast(flat, dtype), variables)
        out = flatten(self.factors.precondition(vectors, eigen, tf.cast(damping, dtype)))
        return tf.cast(out, flat.dtype)

    def inverse(self, flat: tf.Tensor, damping) -> tf.Tensor:
        """The damped block inverse times a flat vector (a graph function)."""
        return self._inverse(flat, tf.constant(damping, self.factors.dtype))

    def preconditioner(self, damping):
        """``r -> (blocks + damping)^-1 r`` for use inside a traced CG solve (reads the
        eigendecomposition variables when it runs)."""
        return lambda r: self._apply_inverse(r, damping)


def kfac_preconditioner_state(optimizer) -> KroneckerState:
    """The factor state of a K-FAC CG preconditioner (Hessian-free, Gauss-Newton):
    `KFAC`'s defaults, a fixed seed (the sampled classes are drawn per step)."""
    return KroneckerState(
        optimizer, statistics_decay=0.95, inverse_update_period=5, exact=False, seed=0
    )
