"""Curvature of a loss at a point: one interface that every optimizer consumes."""

from ctc_newton.curvature.base import Oracle
from ctc_newton.curvature.factories import keras_oracle
from ctc_newton.curvature.graph import GraphOracle
from ctc_newton.curvature.operators import CurvatureOperator
from ctc_newton.curvature.oracle import CurvatureOracle
from ctc_newton.curvature.spectrum import SpectralDensity, spectral_density
from ctc_newton.curvature.vectors import add_scaled, dot, flatten, norm, scale, unflatten

__all__ = [
    "Oracle",
    "CurvatureOracle",
    "GraphOracle",
    "keras_oracle",
    "CurvatureOperator",
    "spectral_density",
    "SpectralDensity",
    "flatten",
    "unflatten",
    "dot",
    "norm",
    "add_scaled",
    "scale",
]
