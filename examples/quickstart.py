"""Quickstart: the CTC loss, its gradient, an exact Hessian-vector product, and Keras.

Run: python examples/quickstart.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import ctc_newton  # noqa: E402

rng = np.random.default_rng(0)
batch, frames, classes = 2, 12, 5
logits = tf.constant(rng.standard_normal((batch, frames, classes)))  # float64 works
labels = np.array([[1, 2, 2, 3], [4, 1, 0, 0]], np.int32)
label_length, logit_length = [4, 2], [12, 9]

# 1. Loss and gradient (softmax minus occupancy), equal to tf.nn.ctc_loss's.
with tf.GradientTape() as outer:
    outer.watch(logits)
    with tf.GradientTape() as inner:
        inner.watch(logits)
        loss = tf.reduce_sum(ctc_newton.ctc_loss(labels, logits, label_length, logit_length))
    grad = inner.gradient(loss, logits)
v = tf.constant(rng.standard_normal(logits.shape))
# 2. The exact Hessian-vector product, by differentiating the gradient again.
hvp = outer.gradient(grad, logits, output_gradients=v)


def gradient_at(x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(ctc_newton.ctc_loss(labels, x, label_length, logit_length))
    return tape.gradient(value, x)


eps = 1e-5
finite_difference = (gradient_at(logits + eps * v) - gradient_at(logits - eps * v)) / (2 * eps)
relative_error = tf.norm(hvp - finite_difference) / tf.norm(finite_difference)
print(f"CTC loss per batch: {loss.numpy():.6f}")
print(f"Hessian-vector product vs central differences: relative error {relative_error:.2e}")
# 3. The PSD CTC Gauss-Newton product (frame-wise softmax Hessian).
gnvp = ctc_newton.ctc_gauss_newton_vector_product(logits, logit_length, v)
print(
    f"<v, H v> = {tf.reduce_sum(v * hvp):+.4f} (indefinite),"
    f" <v, G v> = {tf.reduce_sum(v * gnvp):+.4f} (>= 0)"
)

# 4. Keras: a small GRU learns to emit label strings, with CTCLoss in compile().
keras.utils.set_random_seed(0)
n, width = 256, 3
targets = rng.integers(1, classes, size=(n, width)).astype(np.int32)
inputs = np.zeros((n, frames, classes), np.float32)
for i, target in enumerate(targets):  # each label shown for 3 frames, noisy
    for j, k in enumerate(target):
        inputs[i, 1 + 4 * j : 4 + 4 * j, k] = 1.0
inputs += 0.3 * rng.standard_normal(inputs.shape).astype(np.float32)
model = keras.Sequential(
    [
        keras.Input((frames, classes)),
        keras.layers.GRU(32, return_sequences=True),
        keras.layers.Dense(classes),
    ]
)
model.compile(
    optimizer=keras.optimizers.Adam(1e-2),
    loss=ctc_newton.CTCLoss(),
    metrics=[ctc_newton.LabelErrorRate()],
)
history = model.fit(inputs, targets, epochs=15, batch_size=32, verbose=0)
print(
    f"Keras fit: loss {history.history['loss'][0]:.3f} -> {history.history['loss'][-1]:.3f},"
    f" label error rate {history.history['label_error_rate'][-1]:.3f}"
)
decoded = ctc_newton.greedy_decode(model(inputs[:3])).labels.to_list()
for truth, guess in zip(targets[:3].tolist(), decoded):
    print(f"  truth {truth}  decoded {guess}")
