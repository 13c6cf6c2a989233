"""From your own variable-length sequences to second-order training with fit.

The recipe, on generated "sensor" sequences (each label 1-3 is a burst of a tone of
that frequency; bursts of random length follow each other):

1. Keep each input as a ``[frames, features]`` array and each target as a list of
   label ids in ``1..K-1`` (0 is the CTC blank).
2. Build a ``tf.data.Dataset`` and ``padded_batch`` it: inputs padded with a value the
   model masks (``keras.layers.Masking``), labels padded with 0.
3. Compile with ``CTCLoss()`` (it reads the frame counts from the mask and the label
   counts from the padding) and a ctc_newton optimizer; ``fit``.
4. Decode with ``greedy_decode`` and score with ``label_error_rate``.

About a minute on 2 CPU cores. Run: python examples/your_own_data.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import ctc_newton  # noqa: E402  (registers CTCLoss and the optimizers)

PAD = -10.0  # a feature value that never occurs in real frames
NUM_CLASSES = 4  # blank + labels 1, 2, 3


def make_sequences(count, rng):
    """``count`` (inputs [frames, 2], labels [n]) pairs of varying lengths."""
    data = []
    for _ in range(count):
        labels = rng.integers(1, NUM_CLASSES, size=rng.integers(1, 5))
        frames = []
        for label in labels:
            t = np.arange(rng.integers(6, 12))
            tone = np.sin(0.6 * label * t + rng.uniform(0, 2 * np.pi))
            frames.append(np.stack([tone, 0.1 * rng.standard_normal(len(t))], axis=1))
            frames.append(0.1 * rng.standard_normal((rng.integers(1, 4), 2)))  # a pause
        data.append((np.concatenate(frames).astype("float32"), labels.astype("int32")))
    return data


def dataset(pairs, batch_size):
    """Padded batches: inputs padded with PAD, labels with 0 (the blank)."""
    ds = tf.data.Dataset.from_generator(
        lambda: iter(pairs),
        output_signature=(tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None], tf.int32)),
    )
    return ds.padded_batch(batch_size, padding_values=(PAD, 0))


def main():
    rng = np.random.default_rng(0)
    train, test = make_sequences(600, rng), make_sequences(100, rng)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((None, 2)),
            keras.layers.Masking(mask_value=PAD),
            keras.layers.Bidirectional(keras.layers.GRU(16, return_sequences=True)),
            keras.layers.Dense(NUM_CLASSES),  # logits, blank = 0
        ]
    )
    model.compile(
        optimizer=ctc_newton.optimizers.HessianFree(
            max_cg_iterations=6, preconditioner=False, min_damping=1e-2
        ),
        loss=ctc_newton.CTCLoss(),
    )
    model.fit(dataset(train, 150), epochs=12, verbose=2)

    inputs, labels = next(iter(dataset(test, len(test))))
    logits = model(inputs, training=False)
    length = tf.reduce_sum(tf.cast(model.layers[0].compute_mask(inputs), tf.int32), axis=1)
    decoded = ctc_newton.greedy_decode(logits, length).labels
    truth = tf.RaggedTensor.from_tensor(labels, padding=0)
    print(f"test label error rate: {float(ctc_newton.label_error_rate(decoded, truth)):.3f}")
    for row, want in list(zip(decoded.to_list(), truth.to_list()))[:3]:
        print(f"  truth {want}  decoded {row}")


if __name__ == "__main__":
    main()
