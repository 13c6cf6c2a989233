"""Model-level curvature products against one gradient evaluation, in the same run.

A bidirectional LSTM (2 layers x 64 units each way) + CTC on T=100 frames, batch 32:
times one gradient (forward + backward, as a training step computes it), and the
CurvatureOracle's Gauss-Newton and exact Hessian products, all inside
``tf.function``. "first" is linearization plus one product (what a single product
costs); "each further" is the marginal cost of one more product at the same point
(what a CG iteration costs). Targets: Gauss-Newton <= 3x and Hessian <= 4x a gradient.

Usage: python benchmarks/curvature_products.py
Writes benchmarks/results/curvature_products.md.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from _timing import provenance, write_results  # noqa: E402
from ctc_newton import CTCLoss, CurvatureOracle  # noqa: E402

BATCH, FRAMES, FEATURES, CLASSES, WIDTH, UNITS = 32, 100, 20, 30, 15, 64
FURTHER = 4


def median_ms(fn, reps=7):
    fn()
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def main():
    keras.utils.set_random_seed(0)
    rs = np.random.RandomState(0)
    x = tf.constant(rs.standard_normal((BATCH, FRAMES, FEATURES)).astype(np.float32))
    y = tf.constant(rs.randint(1, CLASSES, size=(BATCH, WIDTH)).astype(np.int32))
    layers = [keras.Input((FRAMES, FEATURES))]
    for _ in range(2):
        layers.append(
            keras.layers.Bidirectional(
                keras.layers.LSTM(UNITS, return_sequences=True, use_cudnn=False)
            )
        )
    layers.append(keras.layers.Dense(CLASSES))
    model = keras.Sequential(layers)
    loss = CTCLoss()
    variables = model.trainable_variables
    vector = [tf.constant(rs.standard_normal(v.shape).astype(np.float32)) for v in variables]

    @tf.function
    def gradient():
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        return tape.gradient(value, variables)

    def products(kind, count):
        @tf.function
        def run():
            oracle = CurvatureOracle.from_keras(model, loss, x, y)
            direction = vector
            for _ in range(count):  # chained, like CG or power iterations
                direction = oracle.curvature_vector_product(direction, kind)
                scale = tf.linalg.global_norm(direction)
                direction = [d / scale for d in direction]
            return direction

        return run

    grad_ms = median_ms(gradient)
    rows = []
    for kind in ("gauss_newton", "hessian"):
        first = median_ms(products(kind, 1))
        more = median_ms(products(kind, 1 + FURTHER))
        each = (more - first) / FURTHER
        rows.append((kind, first, each))
    lines = [
        "# Curvature products of a BiLSTM + CTC model vs one gradient",
        "",
        provenance(Keras=keras.__version__) + "; CPU, float32.",
        f"Model: 2 x BiLSTM({UNITS}) + Dense({CLASSES}), "
        f"{model.count_params()} parameters; batch {BATCH}, T={FRAMES}, "
        f"{FEATURES} features, labels of {WIDTH}. Medians of 7 calls, in tf.function.",
        "",
        f"One gradient: {grad_ms:.1f} ms.",
        "",
        "| product | first at a point (ms) | ratio to gradient | each further (ms) | "
        "ratio to gradient |",
        "|---|---|---|---|---|",
    ]
    for kind, first, each in rows:
        lines.append(
            f"| {kind} | {first:.1f} | {first / grad_ms:.2f}x | {each:.1f} | "
            f"{each / grad_ms:.2f}x |"
        )
    write_results("curvature_products.md", lines)


if __name__ == "__main__":
    main()
