"""Child process for the real-SIGINT test: trains with HessianFree until interrupted.

Writes ``accepted.npz`` (weights after the last finished batch) after every batch and,
on KeyboardInterrupt, ``final.npz`` (the weights when control came back).
Usage: python sigint_fit.py OUTPUT_DIR
"""

import os
import sys

import keras
import numpy as np

from ctc_newton import CTCLoss
from ctc_newton.optimizers import HessianFree


def save(path, model):
    np.savez(path + ".tmp.npz", *[v.numpy() for v in model.trainable_variables])
    os.replace(path + ".tmp.npz", path)


def main(out):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 10, 3)).astype(np.float32)
    y = rng.integers(1, 4, size=(64, 3)).astype(np.int32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((10, 3)), keras.layers.GRU(8, return_sequences=True), keras.layers.Dense(4)]
    )
    model.compile(optimizer=HessianFree(max_cg_iterations=3, preconditioner=False), loss=CTCLoss())
    accepted = os.path.join(out, "accepted.npz")
    save(accepted, model)
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: save(accepted, model)
    )
    print("training", flush=True)
    try:
        model.fit(x, y, batch_size=16, epochs=1000, verbose=0, callbacks=[record])
    except KeyboardInterrupt:
        save(os.path.join(out, "final.npz"), model)


if __name__ == "__main__":
    main(sys.argv[1])
