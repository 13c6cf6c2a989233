"""ctc_newton: second-order optimization for CTC models in TensorFlow.

The CTC loss here can be differentiated twice, exactly: nested
``tf.GradientTape``s give exact Hessian-vector products w.r.t. logits and model
weights, and the PSD CTC Gauss-Newton product is available in output space.
"""

from ctc_newton import curvature, decoding, keras_integration, losses, metrics, optimizers
from ctc_newton.curvature import CurvatureOracle
from ctc_newton.decoding import beam_search_decode, greedy_decode
from ctc_newton.losses import (
    CTCLoss,
    ctc_gauss_newton_vector_product,
    ctc_hessian_vector_product,
    ctc_loss,
)
from ctc_newton.metrics import LabelErrorRate, label_error_rate
from ctc_newton.optimizers.minimize import minimize

__version__ = "0.1.0"

# model.fit with a ctc_newton optimizer takes second-order steps; see keras_integration.
keras_integration.install()

__all__ = [
    "ctc_loss",
    "ctc_hessian_vector_product",
    "ctc_gauss_newton_vector_product",
    "CTCLoss",
    "greedy_decode",
    "beam_search_decode",
    "label_error_rate",
    "LabelErrorRate",
    "CurvatureOracle",
    "minimize",
    "curvature",
    "decoding",
    "keras_integration",
    "losses",
    "metrics",
    "optimizers",
]
