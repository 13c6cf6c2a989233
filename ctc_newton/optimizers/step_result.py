"""What one step of a second-order optimizer did: a typed record."""

import dataclasses
import math
from typing import Any, Dict, Optional


def _logged(**default):
    """A field that ``fit`` shows in its logs when set (``default=...``; none: required)."""
    return dataclasses.field(metadata={"logged": True}, **default)


@dataclasses.dataclass(frozen=True)
class StepResult:
    """The outcome of `SecondOrderOptimizer.step`.

    Attributes:
      value: the loss where the step started.
      accepted: whether the variables moved.
      value_after: the loss where the step ended (``value`` when rejected).
      step_size: the length of the step (Hessian-free, line search: its multiplier).
      rho: actual over predicted reduction (NaN where not defined).
      cg_iterations: curvature products the solve used.

    Fields that do not apply to an optimizer are None (and absent from `as_dict`
    and from ``fit``'s logs). ``fit`` logs the fields declared with ``_logged``:
    accepted, step_size, rho, cg_iterations, damping, radius, lbfgs_iterations
    and stage (`logs`); a new optimizer's field is logged by declaring it so here.
      damping: the damping the step used (Gauss-Newton, Hessian-free).
      radius: the trust radius the step used (trust-region Newton-CG).
      negative_curvature: CG met a direction of non-positive curvature.
      linearized: the oracle is already linearized at the new variables.
      update_l1: ``sum |update|`` (line-search Newton-CG's ``xtol`` test).
      backtracked_to: (Hessian-free) the CG iteration backtracking chose.
      lbfgs_iterations, converged, failed: (L-BFGS) the run's iterations and outcome.
      stage: (`Staged`) 0 for a first-order step, 1 for a second-order one.
      note: why the step was rejected, or what was special about it.
    """

    value: float
    accepted: bool = _logged()
    value_after: Optional[float] = None
    step_size: Optional[float] = _logged(default=None)
    rho: Optional[float] = _logged(default=None)
    cg_iterations: Optional[int] = _logged(default=None)
    damping: Optional[float] = _logged(default=None)
    radius: Optional[float] = _logged(default=None)
    negative_curvature: bool = False
    linearized: bool = False
    update_l1: Optional[float] = None
    backtracked_to: Optional[int] = None
    lbfgs_iterations: Optional[int] = _logged(default=None)
    converged: Optional[bool] = None
    failed: Optional[bool] = None
    stage: Optional[int] = _logged(default=None)
    note: str = ""

    @classmethod
    def rejected(cls, value: float, note: str, **fields) -> "StepResult":
        """A step that left the variables where they were."""
        fields = dict(dict(step_size=0.0, rho=math.nan, cg_iterations=0), **fields)
        return cls(value=value, accepted=False, value_after=value, note=note, **fields)

    @classmethod
    def from_trial(
        cls, value: float, trial: float, accepted: bool, rho: float, step_size: float, **fields
    ) -> "StepResult":
        """A step judged on its trial loss (Gauss-Newton, trust region): the loss after
        it is the trial's when accepted, and a non-finite trial says so in the note."""
        return cls(
            value=value,
            accepted=accepted,
            rho=rho,
            step_size=step_size,
            value_after=trial if accepted else value,
            note="" if math.isfinite(trial) else "non-finite trial loss; rejected",
            **fields,
        )

    @classmethod
    def stationary(cls, value: float) -> "StepResult":
        """A zero gradient: the step is zero, and that is a success (nothing moves)."""
        return cls(
            value=value,
            accepted=True,
            value_after=value,
            step_size=0.0,
            rho=math.nan,
            cg_iterations=0,
            linearized=True,
            update_l1=0.0,
            note="zero gradient; zero step",
        )

    def logs(self) -> Dict[str, float]:
        """The numeric fields ``fit`` shows per step, those that are set."""
        return {
            field.name: float(getattr(self, field.name))
            for field in dataclasses.fields(self)
            if field.metadata.get("logged") and getattr(self, field.name) is not None
        }

    def as_dict(self) -> Dict[str, Any]:
        """The fields that are set (for histories and logs)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
