"""Second-order optimizers on the CurvatureOracle, and `minimize`."""

from ctc_newton.optimizers.base import SecondOrderOptimizer
from ctc_newton.optimizers.gauss_newton import GaussNewton
from ctc_newton.optimizers.hessian_free import HessianFree
from ctc_newton.optimizers.lbfgs import LBFGS
from ctc_newton.optimizers.minimize import METHODS, minimize
from ctc_newton.optimizers.newton_cg import NewtonCG
from ctc_newton.optimizers.result import OptimizeResult

__all__ = ["NewtonCG", "GaussNewton", "HessianFree", "LBFGS", "minimize", "OptimizeResult",
           "SecondOrderOptimizer", "METHODS"]
