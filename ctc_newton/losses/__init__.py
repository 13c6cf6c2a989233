"""CTC loss differentiable twice, its curvature products, and the Keras loss class."""

from ctc_newton.losses._compile import set_xla, xla_enabled
from ctc_newton.losses.ctc import (
    ctc_gauss_newton_vector_product,
    ctc_hessian_vector_product,
    ctc_loss,
    gauss_newton_curvature,
)
from ctc_newton.losses.keras_loss import CTCLoss

__all__ = [
    "ctc_loss",
    "ctc_hessian_vector_product",
    "ctc_gauss_newton_vector_product",
    "CTCLoss",
    "gauss_newton_curvature",
    "set_xla",
    "xla_enabled",
]
