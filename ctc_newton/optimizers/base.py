"""What every ctc_newton optimizer shares: state in variables, config, a step."""

import math
from typing import Any, Dict

import tensorflow as tf


class SecondOrderOptimizer(tf.Module):
    """Base class: one `step` per call on an oracle linearized at the variables.

    State lives in ``tf.Variable``s (so ``tf.train.Checkpoint`` saves it); the
    configuration round-trips through `get_config`/`from_config`.
    """

    def __init__(self, name=None):
        super().__init__(name=name)
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")

    def step(self, oracle, curvature_oracle=None) -> Dict[str, Any]:
        """Takes one step from the oracle's point; returns the iteration's record."""
        raise NotImplementedError

    def get_config(self) -> Dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @staticmethod
    def _check_positive(name, value, allow_zero=False):
        ok = value >= 0 if allow_zero else value > 0
        if not ok or not math.isfinite(value):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"`{name}` must be finite and {bound}, got {value}.")


def nonfinite_record(value, note) -> Dict[str, Any]:
    return {"value": value, "accepted": False, "step_size": 0.0, "cg_iterations": 0,
            "rho": float("nan"), "note": note}
