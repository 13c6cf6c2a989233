"""Extreme eigenvalues of a CTC model's Hessian and Gauss-Newton (scipy's Lanczos).

The exact CTC Hessian is indefinite; its Gauss-Newton is positive semi-definite:
along the Hessian's most negative directions the Gauss-Newton curvature is >= 0.
(The Gauss-Newton's own smallest eigenvalues cluster at 0, where Lanczos converges
slowly, so they are not computed.) Under a minute on 2 cores.
Run: python examples/curvature_spectrum.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from scipy.sparse.linalg import eigsh  # noqa: E402

import ctc_newton  # noqa: E402
from ctc_newton.datasets import NUM_CLASSES, PAD_VALUE, load_digit_lines  # noqa: E402

data = load_digit_lines(num_train=64, num_test=8, max_digits=3)
keras.utils.set_random_seed(0)
model = keras.Sequential(
    [
        keras.Input(data.train.inputs.shape[1:], dtype="float64"),
        keras.layers.Masking(PAD_VALUE, dtype="float64"),
        keras.layers.GRU(8, return_sequences=True, dtype="float64"),
        keras.layers.Dense(NUM_CLASSES, dtype="float64"),
    ]
)
oracle = ctc_newton.curvature.keras_oracle(
    model, ctc_newton.CTCLoss(), data.train.inputs.astype("float64"), data.train.labels
)
print(f"{oracle.size} parameters")
hessian = oracle.as_scipy_linear_operator("hessian")
gauss_newton = oracle.as_scipy_linear_operator("gauss_newton")
top = eigsh(hessian, k=3, which="LA", return_eigenvectors=False)
bottom, directions = eigsh(hessian, k=3, which="SA")
print(f"     hessian: largest {np.sort(top)[::-1].round(3)}, smallest {np.sort(bottom).round(3)}")
top = eigsh(gauss_newton, k=3, which="LA", return_eigenvectors=False)
along = [float(d @ gauss_newton.matvec(d)) for d in directions.T]
print(
    f"gauss_newton: largest {np.sort(top)[::-1].round(3)}; curvature along the Hessian's "
    f"smallest directions {np.round(along, 3)} (>= 0)"
)
