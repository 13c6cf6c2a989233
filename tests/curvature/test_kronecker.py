"""K-FAC's Kronecker-factored blocks against exact Gauss-Newton blocks from the oracle."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctc_newton.curvature import CurvatureOracle
from ctc_newton.curvature.kronecker import DiagonalBlock, EmbeddingBlock, KroneckerFactors
from ctc_newton.curvature.output_sampling import output_cotangents
from ctc_newton.losses import CTCLoss

SEED = tf.constant([3, 4])


def dense_gauss_newton(model, loss, x, y):
    oracle = CurvatureOracle.from_keras(model, loss, x, y)
    operator = oracle.as_scipy_linear_operator("gauss_newton")
    return np.stack([operator.matvec(e) for e in np.eye(oracle.size)], axis=1)


def variable_slices(model):
    sizes = [int(np.prod(v.shape)) for v in model.trainable_variables]
    ends = np.cumsum(sizes)
    return [slice(end - size, end) for size, end in zip(sizes, ends)]


def kronecker_block_indices(model, block):
    """Flat indices of a Kronecker block in the block's own (kernel rows, bias row) order."""
    slices = variable_slices(model)
    kernel = np.arange(slices[block.indices[0]].start, slices[block.indices[0]].stop)
    rows = kernel.reshape(-1, block.outputs)
    if block.has_bias:
        bias = np.arange(slices[block.indices[1]].start, slices[block.indices[1]].stop)
        rows = np.concatenate([rows, bias[np.newaxis]], axis=0)
    return rows.reshape(-1)


def test_dense_squared_error_one_example_is_the_exact_block():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    x, y = tf.random.normal((1, 3)), tf.random.normal((1, 2))
    loss = keras.losses.MeanSquaredError()
    a_factor, s_factor = KroneckerFactors(model, loss, exact=True).statistics(x, y, None, SEED)[0]
    exact = dense_gauss_newton(model, loss, x, y)
    np.testing.assert_allclose(np.kron(a_factor, s_factor), exact, rtol=1e-5, atol=1e-7)


def ctc_dense_model(frames=4, features=3, classes=4):
    return keras.Sequential(
        [
            keras.Input((frames, features), dtype="float64"),
            keras.layers.Dense(classes, dtype="float64"),
        ]
    )


def test_ctc_output_layer_block_is_exact_for_inputs_constant_in_time():
    # G_W = sum_t a a^T (x) H_t = A (x) S when a_t does not change with t.
    keras.utils.set_random_seed(1)
    model = ctc_dense_model()
    x = tf.tile(tf.random.normal((1, 1, 3), dtype=tf.float64), [1, 4, 1])
    y = tf.constant([[1, 2]])
    factors = KroneckerFactors(model, CTCLoss(), exact=True)
    a_factor, s_factor = factors.statistics(x, y, None, SEED)[0]
    exact = dense_gauss_newton(model, CTCLoss(), x, y)
    np.testing.assert_allclose(np.kron(a_factor, s_factor), exact, rtol=1e-8, atol=1e-12)


def test_ctc_output_layer_block_is_close_for_inputs_slowly_varying_in_time():
    # Independent frames are where the approximation is worst (about 50% here); a
    # feature sequence that drifts a little per frame is close to the constant case.
    keras.utils.set_random_seed(2)
    model = ctc_dense_model()
    drift = 0.1 * tf.random.normal((1, 4, 3), dtype=tf.float64)
    x = tf.random.normal((1, 1, 3), dtype=tf.float64) + tf.cumsum(drift, axis=1)
    y = tf.constant([[1, 2]])
    a_factor, s_factor = KroneckerFactors(model, CTCLoss(), exact=True).statistics(
        x, y, None, SEED
    )[0]
    exact = dense_gauss_newton(model, CTCLoss(), x, y)
    error = np.linalg.norm(np.kron(a_factor, s_factor) - exact) / np.linalg.norm(exact)
    assert error < 0.1, f"relative error of the Kronecker block: {error:.3f}"


def every_block_model(padding, stride):
    """Embedding -> Conv1D -> GRU -> LSTM -> Dense (logits), float64."""
    return keras.Sequential(
        [
            keras.Input((12,), dtype="int32"),
            keras.layers.Embedding(7, 4, dtype="float64"),
            keras.layers.Conv1D(
                5,
                3,
                strides=stride,
                dilation_rate=2 if stride == 1 else 1,
                padding=padding,
                activation="tanh",
                dtype="float64",
            ),
            keras.layers.GRU(4, return_sequences=True, dtype="float64"),
            keras.layers.LSTM(3, return_sequences=True, dtype="float64"),
            keras.layers.Dense(5, dtype="float64"),
        ]
    )


@pytest.mark.parametrize("padding,stride", [("same", 1), ("causal", 1), ("valid", 2)])
def test_recorded_rows_give_each_blocks_gradient(padding, stride):
    # sum_p a_p ds_p^T must be the gradient of the block's weights for the same cotangent:
    # this pins the convolution windows, the embedding ids and the recurrent-kernel trick.
    keras.utils.set_random_seed(3)
    model = every_block_model(padding, stride)
    x = tf.constant(np.random.default_rng(0).integers(0, 7, (2, 12)), tf.int32)
    y = tf.constant([[1, 2], [3, 0]])
    loss = CTCLoss()
    factors = KroneckerFactors(model, loss)
    kinds = {type(b).__name__ for b in factors.blocks}
    assert kinds == {"KroneckerBlock", "EmbeddingBlock", "DiagonalBlock"}
    assert factors.num_kronecker_blocks == 5
    inputs, (pre,), (diagonal,) = factors.rows(x, y, None, SEED)
    with tf.GradientTape() as tape:
        outputs = model(x, training=True)
    (u,) = output_cotangents(loss, y, outputs, None, SEED)
    grads = tape.gradient(outputs, model.trainable_variables, output_gradients=u)
    kronecker = [b for b in factors.blocks if not isinstance(b, DiagonalBlock)]
    for block, (a_rows, _), s_rows in zip(kronecker, inputs, pre):
        if isinstance(block, EmbeddingBlock):
            a_rows = tf.one_hot(a_rows, block.inputs, dtype=tf.float64)
        expected = block.to_matrix([grads[i] for i in block.indices])
        np.testing.assert_allclose(
            tf.matmul(a_rows, s_rows, transpose_a=True), expected, atol=1e-10, err_msg=block.name
        )
    others = [b for b in factors.blocks if isinstance(b, DiagonalBlock)]
    for block, g in zip(others, diagonal):
        np.testing.assert_allclose(g, grads[block.indices[0]], atol=1e-10, err_msg=block.name)


def test_sampled_fisher_averages_to_the_ctc_gauss_newton():
    # E[g g^T] = G for g the gradient under cotangents sampled from the model's frames;
    # the Monte-Carlo error shrinks like 1 / sqrt(samples).
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((4, 3), dtype="float64"),
            keras.layers.Dense(3, activation="tanh", dtype="float64"),
            keras.layers.Dense(4, dtype="float64"),
        ]
    )
    x = tf.random.normal((2, 4, 3), dtype=tf.float64)
    y = tf.constant([[1, 2], [3, 0]])
    loss = CTCLoss()
    exact = dense_gauss_newton(model, loss, x, y)

    @tf.function
    def sampled_gradient(seed):
        with tf.GradientTape() as tape:
            outputs = model(x)
        (u,) = output_cotangents(loss, y, outputs, None, seed)
        grads = tape.gradient(outputs, model.trainable_variables, output_gradients=u)
        return tf.concat([tf.reshape(g, [-1]) for g in grads], 0)

    samples = np.stack([sampled_gradient(tf.constant([5, i])) for i in range(1600)])

    def error(n):
        estimate = samples[:n].T @ samples[:n] / n
        return np.linalg.norm(estimate - exact) / np.linalg.norm(exact)

    small, large = error(100), error(1600)
    assert large < 0.1, large
    assert large < small / 2, (small, large)  # 1 / sqrt(16) = 1 / 4 expected


@pytest.mark.parametrize("exact", [False, True])
def test_diagonal_blocks_average_to_the_gauss_newton_diagonal(exact):
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((5, 3), dtype="float64"),
            keras.layers.GRU(3, return_sequences=True, dtype="float64"),
            keras.layers.Dense(4, dtype="float64"),
        ]
    )
    x = tf.random.normal((2, 5, 3), dtype=tf.float64)
    y = tf.constant([[1, 2], [3, 0]])
    factors = KroneckerFactors(model, CTCLoss(), exact=exact)
    diagonal = np.diag(dense_gauss_newton(model, CTCLoss(), x, y))
    slices = variable_slices(model)
    samples = 200
    totals = None
    for i in range(samples):
        stats = factors.statistics(x, y, None, tf.constant([6, i]))
        totals = (
            stats
            if totals is None
            else [[a + b for a, b in zip(p, q)] for p, q in zip(totals, stats)]
        )
    blocks = [(n, b) for n, b in enumerate(factors.blocks) if isinstance(b, DiagonalBlock)]
    assert len(blocks) == 2  # the GRU's recurrent kernel and bias
    for n, block in blocks:
        estimate = np.reshape(totals[n][0], [-1]) / samples
        expected = diagonal[slices[block.indices[0]]]
        error = np.linalg.norm(estimate - expected) / np.linalg.norm(expected)
        assert error < 0.2, (block.name, error)


def test_a_loss_without_an_output_distribution_is_refused():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="output_sampling.register"):
        KroneckerFactors(model, keras.losses.MeanAbsoluteError())
    with pytest.raises(ValueError, match="output_sampling.register"):
        KroneckerFactors(model, keras.losses.CategoricalCrossentropy(from_logits=False))


def test_padded_frames_are_not_positions_of_the_input_factor():
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input((5, 2), dtype="float64"),
            keras.layers.Masking(0.0),
            keras.layers.GRU(3, return_sequences=True, dtype="float64"),
            keras.layers.Dense(4, dtype="float64"),
        ]
    )
    x = np.random.default_rng(1).normal(size=(2, 5, 2))
    x[0, 3:] = 0.0  # the first sequence has 3 frames
    live = np.concatenate([x[0, :3], x[1]])
    factors = KroneckerFactors(model, CTCLoss())
    gru_a = factors.statistics(tf.constant(x), tf.constant([[1, 2], [3, 0]]), None, SEED)[0][0]
    np.testing.assert_allclose(gru_a, live.T @ live / len(live), rtol=1e-6)
