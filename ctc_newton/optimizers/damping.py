"""Levenberg-Marquardt adaptation of the damping from the reduction ratio rho."""

import math
from typing import Tuple


def martens_update(
    damping: float, rho: float, decrease: float = 2 / 3, increase: float = 3 / 2
) -> float:
    """Martens (2010): ``rho < 1/4``: damping *= 3/2; ``rho > 3/4``: damping *= 2/3.

    A NaN ``rho`` counts as a failure.
    """
    if math.isnan(rho) or rho < 0.25:
        return damping * increase
    if rho > 0.75:
        return damping * decrease
    return damping


def nielsen_update(damping: float, nu: float, rho: float) -> Tuple[float, float]:
    """Nielsen's rule: success (``rho > 0``) scales by ``max(1/3, 1 - (2 rho - 1)^3)``
    and resets ``nu = 2``; failure multiplies by ``nu`` and doubles it.

    Returns:
      ``(damping, nu)``.
    """
    if not math.isnan(rho) and rho > 0:
        return damping * max(1 / 3, 1 - (2 * rho - 1) ** 3), 2.0
    return damping * nu, nu * 2


def reduction_ratio(actual: float, predicted: float) -> float:
    """``rho = actual / predicted`` with non-finite or non-negative predictions -> NaN."""
    if not (math.isfinite(actual) and math.isfinite(predicted)) or predicted >= 0:
        return float("nan")
    return actual / predicted
