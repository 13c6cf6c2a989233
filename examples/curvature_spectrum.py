"""Top and bottom eigenvalues of a CTC model's Hessian and Gauss-Newton (scipy's Lanczos).

The exact CTC Hessian is indefinite; its Gauss-Newton is positive semi-definite.
Run: python examples/curvature_spectrum.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from scipy.sparse.linalg import eigsh  # noqa: E402

import ctc_newton  # noqa: E402
from ctc_newton.datasets import NUM_CLASSES, PAD_VALUE, load_digit_lines  # noqa: E402

data = load_digit_lines(num_train=64, num_test=8, max_digits=3)
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input(data.train.inputs.shape[1:], dtype="float64"),
                          keras.layers.Masking(PAD_VALUE, dtype="float64"),
                          keras.layers.GRU(8, return_sequences=True, dtype="float64"),
                          keras.layers.Dense(NUM_CLASSES, dtype="float64")])
oracle = ctc_newton.CurvatureOracle.from_keras(model, ctc_newton.CTCLoss(),
                                               data.train.inputs.astype("float64"),
                                               data.train.labels)
print(f"{oracle.size} parameters")
for kind in ("hessian", "gauss_newton"):
    operator = oracle.as_scipy_linear_operator(kind)
    top = eigsh(operator, k=3, which="LA", return_eigenvectors=False)
    bottom = eigsh(operator, k=3, which="SA", return_eigenvectors=False)
    print(f"{kind:>12}: largest {sorted(top)[::-1]}, smallest {sorted(bottom)}")
