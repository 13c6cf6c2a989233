"""Train a CTC recognizer of handwritten digit strings with Keras fit and Hessian-free.

Run: python examples/digit_lines_fit.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import ctc_newton  # noqa: E402  (installs the fit hook for ctc_newton optimizers)
from ctc_newton.datasets import load_digit_lines  # noqa: E402
from ctc_newton.optimizers import HessianFree  # noqa: E402
from ctc_newton.recognizer import build_recognizer, evaluate, examples  # noqa: E402

data = load_digit_lines(num_train=2000, num_test=500, seed=0)
model = build_recognizer(units=32)
model.compile(
    optimizer=HessianFree(max_cg_iterations=50, preconditioner=False),
    loss=ctc_newton.CTCLoss(),
    metrics=[ctc_newton.LabelErrorRate()],
)
model.fit(
    data.train.inputs,
    data.train.labels,
    batch_size=250,
    epochs=3,
    validation_data=(data.test.inputs, data.test.labels),
)
rate, decoded = evaluate(model, data.test)
print(f"test label error rate {rate:.3f}")
for row in examples(data.test, decoded):
    print(f"  truth {row['truth']:>6}  decoded {row['decoded']:>6}")
