"""The second-order methods by name: what `minimize` and ``ctc-newton train`` accept.

Adding an optimizer: its own module, and one line here.
"""

from typing import Dict, Type

from ctc_newton.optimizers.base import SecondOrderOptimizer
from ctc_newton.optimizers.gauss_newton import GaussNewton
from ctc_newton.optimizers.hessian_free import HessianFree
from ctc_newton.optimizers.kfac import KFAC
from ctc_newton.optimizers.lbfgs import LBFGS
from ctc_newton.optimizers.levenberg_marquardt import LevenbergMarquardt
from ctc_newton.optimizers.newton_cg import LineSearchNewtonCG
from ctc_newton.optimizers.trust_ncg import TrustRegionNewtonCG

OPTIMIZERS: Dict[str, Type[SecondOrderOptimizer]] = {
    "newton-cg": LineSearchNewtonCG,  # scipy's Newton-CG
    "trust-ncg": TrustRegionNewtonCG,  # scipy's trust-ncg
    "gauss-newton": GaussNewton,
    "hessian-free": HessianFree,
    "lbfgs": LBFGS,
    "levenberg-marquardt": LevenbergMarquardt,
    "kfac": KFAC,
}
METHODS = tuple(OPTIMIZERS)


def get(method: str, **options) -> SecondOrderOptimizer:
    """A new optimizer for ``method`` built with ``options``.

    Raises:
      ValueError: an unknown method (the message lists the known ones).
    """
    if method not in OPTIMIZERS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    return OPTIMIZERS[method](**options)
