"""Full-batch minimize(): every method on a small CTC model, like scipy.optimize.minimize.

Run: python examples/minimize_full_batch.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import ctc_newton  # noqa: E402
from ctc_newton.datasets import load_digit_lines  # noqa: E402
from ctc_newton.optimizers import minimize  # noqa: E402

data = load_digit_lines(num_train=200, num_test=10, max_digits=3)
for method in ["trust-ncg", "gauss-newton", "hessian-free", "lbfgs"]:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(data.train.inputs.shape[1:]),
            keras.layers.Masking(ctc_newton.datasets.PAD_VALUE),
            keras.layers.Dense(16, activation="tanh"),
            keras.layers.Dense(ctc_newton.datasets.NUM_CLASSES),
        ]
    )
    oracle = ctc_newton.CurvatureOracle.from_keras(
        model, ctc_newton.CTCLoss(), data.train.inputs, data.train.labels
    )
    result = minimize(oracle, method=method, maxiter=15)
    print(
        f"{method:>13}: loss {result.history[0]['value']:.3f} -> {result.fun:.3f} in "
        f"{result.nit} iterations ({result.nhev} curvature products): {result.message}"
    )
