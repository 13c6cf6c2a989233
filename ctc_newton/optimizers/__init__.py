"""Second-order optimizers on the curvature oracle, and `minimize`."""

from ctc_newton.optimizers.base import SecondOrderOptimizer
from ctc_newton.optimizers.gauss_newton import GaussNewton
from ctc_newton.optimizers.hessian_free import HessianFree
from ctc_newton.optimizers.kfac import KFAC
from ctc_newton.optimizers.lbfgs import LBFGS
from ctc_newton.optimizers.levenberg_marquardt import LevenbergMarquardt
from ctc_newton.optimizers.minimize import minimize
from ctc_newton.optimizers.newton_cg import LineSearchNewtonCG
from ctc_newton.optimizers.registry import METHODS, OPTIMIZERS
from ctc_newton.optimizers.result import OptimizeResult
from ctc_newton.optimizers.staged import Staged
from ctc_newton.optimizers.step_result import StepResult
from ctc_newton.optimizers.trust_ncg import TrustRegionNewtonCG

__all__ = [
    "TrustRegionNewtonCG",
    "LineSearchNewtonCG",
    "GaussNewton",
    "HessianFree",
    "KFAC",
    "LBFGS",
    "LevenbergMarquardt",
    "Staged",
    "minimize",
    "OptimizeResult",
    "StepResult",
    "SecondOrderOptimizer",
    "METHODS",
    "OPTIMIZERS",
]
