"""First-order steps, then second-order ones, in one ``model.fit``.

Physics-informed and other full-batch users train with Adam first and then L-BFGS,
Gauss-Newton or Levenberg-Marquardt to a much lower loss. `Staged` does both in one
``fit``, with one History and one progress bar: its first ``switch_after`` steps are
the Keras optimizer's, every later step the ctc_newton optimizer's. The step count is
`Staged`'s ``iterations``, and both optimizers' state (Adam's moments, the damping, the
L-BFGS memory) is saved with it, so ``model.save``/``load_model`` resume in the right
stage with the same next steps, and further ``fit`` calls continue where the last one
stopped.
"""

import dataclasses
import math
from typing import Any, Dict

import keras
import numpy as np

from ctc_newton.optimizers.base import SecondOrderOptimizer
from ctc_newton.optimizers.step_result import StepResult


@keras.saving.register_keras_serializable(package="ctc_newton")
class Staged(SecondOrderOptimizer):
    """A Keras optimizer for the first ``switch_after`` steps, then a ctc_newton one.

    ```python
    model.compile(
        optimizer=ctc_newton.optimizers.Staged(keras.optimizers.Adam(1e-3), LBFGS(), 1000),
        loss="mse",
    )
    model.fit(x, y, batch_size=len(x), epochs=1500)  # 1,000 Adam steps, then L-BFGS
    ```

    Args:
      first: a Keras (first-order) optimizer, e.g. ``keras.optimizers.Adam(1e-3)``.
      second: a ctc_newton optimizer, e.g. `LBFGS` or `GaussNewton`.
      switch_after: how many steps ``first`` takes (0: ``second`` from the start).
      name: optimizer name.

    Raises:
      TypeError: ``first`` is not a Keras optimizer or is a ctc_newton one, or
        ``second`` is not a ctc_newton optimizer.
      ValueError: ``switch_after`` is not a non-negative integer.
    """

    def __init__(
        self,
        first: keras.optimizers.Optimizer,
        second: SecondOrderOptimizer,
        switch_after: int,
        name: str = "staged",
    ):
        super().__init__(name=name)
        if not isinstance(first, keras.optimizers.Optimizer) or isinstance(
            first, SecondOrderOptimizer
        ):
            raise TypeError(
                "`first` must be a Keras first-order optimizer such as "
                f"keras.optimizers.Adam(1e-3), got {first!r}."
            )
        if not isinstance(second, SecondOrderOptimizer):
            raise TypeError(
                "`second` must be a ctc_newton optimizer such as "
                f"ctc_newton.optimizers.LBFGS(), got {second!r}."
            )
        if isinstance(switch_after, bool) or not isinstance(switch_after, (int, np.integer)):
            raise TypeError(f"`switch_after` must be an integer, got {switch_after!r}.")
        if switch_after < 0:
            raise ValueError(f"`switch_after` must be >= 0, got {switch_after}.")
        self.first, self.second, self.switch_after = first, second, int(switch_after)
        self.needs_gauss_newton = second.needs_gauss_newton

    def build(self, variables):
        super().build(variables)
        # Built now, so that load_model restores their state (Keras saves nested
        # optimizers as the attributes they are) before the first step.
        for inner in (self.first, self.second):
            if not inner.built:
                inner.build(variables)

    @property
    def stage(self) -> int:
        """0 while ``first`` steps, 1 once ``second`` does."""
        return int(self._read(self.iterations) >= self.switch_after)

    def _step(self, oracle, curvature_oracle=None) -> StepResult:
        stage = self.stage
        if stage == 1:
            result = self.second.step(oracle, curvature_oracle)
        else:
            value, gradient = float(oracle.value()), oracle.gradient()
            if not (math.isfinite(value) and all(np.all(np.isfinite(g)) for g in gradient)):
                result = StepResult.rejected(value, "non-finite loss or gradient; no step")
            else:
                self.first.apply(gradient, oracle.variables)
                result = StepResult(value=value, accepted=True, note="first-order stage")
        self.iterations.assign_add(1)
        return dataclasses.replace(result, stage=stage)

    def get_config(self) -> Dict[str, Any]:
        return dict(
            first=keras.optimizers.serialize(self.first),
            second=keras.optimizers.serialize(self.second),
            switch_after=self.switch_after,
            name=self.name,
        )

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("first", "second"):
            config[key] = keras.optimizers.deserialize(config[key], custom_objects=custom_objects)
        return cls(**config)
