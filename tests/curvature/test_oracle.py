"""CurvatureOracle against explicit matrices, finite differences, Keras and scipy."""

import keras
import numpy as np
import pytest
import scipy.sparse.linalg
import tensorflow as tf

from ctc_newton import CTCLoss, CurvatureOracle
from ctc_newton.curvature import flatten, unflatten


def explicit_matrix(oracle, kind):
    """The oracle's matrix, column by column (for symmetry/PSD checks)."""
    n = oracle.size
    columns = []
    for i in range(n):
        e = np.zeros(n)
        e[i] = 1.0
        columns.append(
            flatten(
                oracle.curvature_vector_product(unflatten(tf.constant(e), oracle.variables), kind)
            ).numpy()
        )
    return np.stack(columns, axis=1)


def autodiff_hessian(loss_fn, variables):
    """Independent reference: nested-tape Jacobian of the flat gradient."""
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            loss = loss_fn()
        grad = flatten(inner.gradient(loss, variables))
    blocks = outer.jacobian(grad, variables)
    return np.concatenate([b.numpy().reshape(grad.shape[0], -1) for b in blocks], axis=1)


def autodiff_jacobian(outputs_fn, variables):
    with tf.GradientTape() as tape:
        out = tf.reshape(outputs_fn(), [-1])
    blocks = tape.jacobian(out, variables)
    return np.concatenate([b.numpy().reshape(out.shape[0], -1) for b in blocks], axis=1)


def small_model(kind="dense", units=4, classes=3, frames=5, features=2, dropout=0.0):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((frames, features), dtype="float64")]
    if kind == "gru":
        layers.append(keras.layers.GRU(units, return_sequences=True, dtype="float64"))
    elif kind == "dense":
        layers.append(keras.layers.Dense(units, activation="tanh", dtype="float64"))
    if dropout:
        layers.append(keras.layers.Dropout(dropout, dtype="float64"))
    layers.append(keras.layers.Dense(classes, dtype="float64"))
    return keras.Sequential(layers)


@pytest.fixture
def ctc_batch(rng):
    x = rng.standard_normal((3, 5, 2))
    y = np.array([[1, 2], [2, 0], [1, 1]], np.int32)  # 0 = blank = padding
    return x, y


def test_rosenbrock_from_function():
    w = tf.Variable([-1.2, 1.0], dtype=tf.float64)

    def rosenbrock():
        return 100.0 * (w[1] - w[0] ** 2) ** 2 + (1.0 - w[0]) ** 2

    oracle = CurvatureOracle.from_function(rosenbrock, [w])
    x, y = -1.2, 1.0
    hessian = np.array([[1200 * x**2 - 400 * y + 2, -400 * x], [-400 * x, 200]])
    np.testing.assert_allclose(explicit_matrix(oracle, "hessian"), hessian, rtol=1e-12)
    np.testing.assert_allclose(
        oracle.gradient()[0].numpy(), [-400 * x * (y - x**2) - 2 * (1 - x), 200 * (y - x**2)]
    )
    with pytest.raises(ValueError, match="Gauss-Newton products need the model outputs"):
        oracle.gauss_newton_vector_product([tf.ones(2, tf.float64)])


def test_ctc_model_hessian_and_gauss_newton_equal_explicit_matrices(ctc_batch):
    x, y = ctc_batch
    model = small_model()
    loss = CTCLoss()
    oracle = CurvatureOracle.from_keras(model, loss, x, y)
    variables = model.trainable_variables
    hessian = autodiff_hessian(lambda: loss(y, model(x)), variables)
    np.testing.assert_allclose(explicit_matrix(oracle, "hessian"), hessian, atol=1e-10)
    # Gauss-Newton: J^T H_out J with H_out the frame-wise softmax Hessian / B.
    jacobian = autodiff_jacobian(lambda: model(x), variables)
    probs = tf.nn.softmax(model(x)).numpy().reshape(-1, 3)
    blocks = [np.diag(p) - np.outer(p, p) for p in probs]
    output_hessian = np.zeros((probs.size, probs.size))
    for i, block in enumerate(blocks):
        output_hessian[3 * i : 3 * i + 3, 3 * i : 3 * i + 3] = block / len(x)
    gauss_newton = jacobian.T @ output_hessian @ jacobian
    explicit = explicit_matrix(oracle, "gauss_newton")
    np.testing.assert_allclose(explicit, gauss_newton, atol=1e-10)
    assert np.linalg.eigvalsh(explicit).min() > -1e-10
    assert np.linalg.eigvalsh(hessian).min() < -1e-6  # CTC's exact Hessian is indefinite


def test_hessian_product_matches_finite_differences_for_recurrent_ctc(ctc_batch, rng):
    x, y = ctc_batch
    model = small_model("gru")
    loss = CTCLoss()
    oracle = CurvatureOracle.from_keras(model, loss, x, y)
    v = [tf.constant(rng.standard_normal(w.shape)) for w in model.trainable_variables]
    hv = flatten(oracle.hessian_vector_product(v)).numpy()
    eps, original = 1e-5, [w.numpy() for w in model.trainable_variables]

    def gradient_at(sign):
        for w, o, d in zip(model.trainable_variables, original, v):
            w.assign(o + sign * eps * d.numpy())
        g = flatten(CurvatureOracle.from_keras(model, loss, x, y).gradient()).numpy()
        for w, o in zip(model.trainable_variables, original):
            w.assign(o)
        return g

    fd = (gradient_at(1) - gradient_at(-1)) / (2 * eps)
    assert np.linalg.norm(hv - fd) <= 1e-6 * np.linalg.norm(fd)
    # Symmetric and PSD Gauss-Newton on random vectors.
    u = [tf.constant(rng.standard_normal(w.shape)) for w in model.trainable_variables]
    gv, gu = oracle.gauss_newton_vector_product(v), oracle.gauss_newton_vector_product(u)
    np.testing.assert_allclose(
        np.dot(flatten(u), flatten(gv)), np.dot(flatten(v), flatten(gu)), rtol=1e-10
    )
    assert np.dot(flatten(v), flatten(gv)) >= 0


def test_gauss_newton_equals_hessian_for_linear_models():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4))
    keras.utils.set_random_seed(1)
    for loss, y, classes in [
        ("mse", rng.standard_normal((6, 2)), 2),
        (
            keras.losses.CategoricalCrossentropy(from_logits=True),
            np.eye(3)[rng.integers(0, 3, 6)],
            3,
        ),
        (keras.losses.SparseCategoricalCrossentropy(from_logits=True), rng.integers(0, 3, 6), 3),
        (
            keras.losses.BinaryCrossentropy(from_logits=True),
            rng.integers(0, 2, (6, 2)).astype(float),
            2,
        ),
    ]:
        model = keras.Sequential(
            [keras.Input((4,), dtype="float64"), keras.layers.Dense(classes, dtype="float64")]
        )
        oracle = CurvatureOracle.from_keras(model, loss, x, y)
        np.testing.assert_allclose(
            explicit_matrix(oracle, "gauss_newton"), explicit_matrix(oracle, "hessian"), atol=1e-12
        )


def test_regularizers_enter_with_their_exact_hessian(rng):
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 1))
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((3,), dtype="float64"),
            keras.layers.Dense(1, dtype="float64", kernel_regularizer=keras.regularizers.L2(0.3)),
        ]
    )
    # Keras losses compute in floatx (float32) unless told otherwise.
    oracle = CurvatureOracle.from_keras(model, keras.losses.MeanSquaredError(dtype="float64"), x, y)
    np.testing.assert_allclose(
        explicit_matrix(oracle, "gauss_newton"), explicit_matrix(oracle, "hessian"), atol=1e-12
    )
    hessian = autodiff_hessian(
        lambda: tf.reduce_mean((model(x) - y) ** 2) + sum(model.losses), model.trainable_variables
    )
    np.testing.assert_allclose(explicit_matrix(oracle, "hessian"), hessian, atol=1e-12)


def test_gradient_equals_what_fit_computes_with_sample_weights_and_mask(rng):
    x = rng.standard_normal((4, 6, 2))
    x[1, 4:] = 0.0
    x[3, 3:] = 0.0
    y = np.array([[1, 2], [2, 0], [1, 1], [2, 0]], np.int32)
    weights = np.array([1.0, 0.5, 2.0, 0.0])
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 2), dtype="float64")
    hidden = keras.layers.Masking(0.0, dtype="float64")(inputs)
    hidden = keras.layers.GRU(4, return_sequences=True, dtype="float64")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(3, dtype="float64")(hidden))
    oracle = CurvatureOracle.from_keras(model, CTCLoss(), x, y, sample_weight=weights)
    before = [w.numpy() for w in model.trainable_variables]
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=CTCLoss())
    model.train_on_batch(x, y, sample_weight=weights)
    step = [b - w.numpy() for b, w in zip(before, model.trainable_variables)]
    for s, g in zip(step, oracle.gradient()):
        np.testing.assert_allclose(s, g.numpy(), rtol=1e-6, atol=1e-10)


def test_dropout_masks_are_shared_and_batchnorm_statistics_untouched(ctc_batch, rng):
    x, y = ctc_batch
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((5, 2), dtype="float64"),
            keras.layers.Dense(6, dtype="float64"),
            keras.layers.BatchNormalization(dtype="float64"),
            keras.layers.Dropout(0.5, dtype="float64"),
            keras.layers.Dense(3, dtype="float64"),
        ]
    )
    statistics = [w.numpy().copy() for w in model.non_trainable_variables]
    oracle = CurvatureOracle.from_keras(model, CTCLoss(), x, y)
    v = [tf.constant(rng.standard_normal(w.shape)) for w in model.trainable_variables]
    for kind in ("gauss_newton", "hessian"):
        first = flatten(oracle.curvature_vector_product(v, kind)).numpy()
        second = flatten(oracle.curvature_vector_product(v, kind)).numpy()
        np.testing.assert_array_equal(first, second)
    matrix = explicit_matrix(oracle, "hessian")
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-10)
    for old, new in zip(statistics, model.non_trainable_variables):
        np.testing.assert_array_equal(old, new.numpy())


def test_scipy_view_solves_and_finds_the_top_eigenvalue(ctc_batch):
    x, y = ctc_batch
    model = small_model()
    oracle = CurvatureOracle.from_keras(model, CTCLoss(), x, y)
    matrix = explicit_matrix(oracle, "gauss_newton")
    operator = oracle.as_scipy_linear_operator("gauss_newton", damping=1e-2)
    b = np.random.default_rng(0).standard_normal(oracle.size)
    solution, info = scipy.sparse.linalg.cg(operator, b, rtol=1e-10, maxiter=500)
    assert info == 0
    np.testing.assert_allclose((matrix + 1e-2 * np.eye(len(b))) @ solution, b, atol=1e-7)
    top = scipy.sparse.linalg.eigsh(
        oracle.as_scipy_linear_operator("hessian"), k=1, which="LA", return_eigenvectors=False
    )
    hessian = explicit_matrix(oracle, "hessian")
    np.testing.assert_allclose(top[0], np.linalg.eigvalsh(hessian).max(), rtol=1e-8)


def test_tf_linear_operator_view(ctc_batch):
    x, y = ctc_batch
    oracle = CurvatureOracle.from_keras(small_model(), CTCLoss(), x, y)
    operator = oracle.as_linear_operator("gauss_newton", damping=0.5)
    assert operator.is_self_adjoint and operator.is_positive_definite
    dense = operator.to_dense().numpy()
    np.testing.assert_allclose(
        dense, explicit_matrix(oracle, "gauss_newton") + 0.5 * np.eye(oracle.size), atol=1e-12
    )
    assert oracle.as_linear_operator("hessian").is_positive_definite is None


def test_diagonal_estimates(ctc_batch):
    x, y = ctc_batch
    model = small_model()
    loss = CTCLoss()
    oracle = CurvatureOracle.from_keras(model, loss, x, y)
    squared = flatten(oracle.squared_gradient_diagonal()).numpy()
    reference = np.zeros(oracle.size)
    for i in range(len(x)):  # each example's contribution to the batch mean
        with tf.GradientTape() as tape:
            value = loss(y[i : i + 1], model(x[i : i + 1])) / len(x)
        reference += flatten(tape.gradient(value, model.trainable_variables)).numpy() ** 2
    np.testing.assert_allclose(squared, reference, rtol=1e-8)
    diagonal = np.diag(explicit_matrix(oracle, "gauss_newton"))
    estimate = flatten(oracle.hutchinson_diagonal("gauss_newton", num_samples=400, seed=0)).numpy()
    assert np.linalg.norm(estimate - diagonal) < 0.2 * np.linalg.norm(diagonal)


def test_products_inside_tf_function_equal_eager(ctc_batch, rng):
    x, y = ctc_batch
    model = small_model("gru")
    v = [tf.constant(rng.standard_normal(w.shape)) for w in model.trainable_variables]

    @tf.function
    def products():
        oracle = CurvatureOracle.from_keras(model, CTCLoss(), x, y)
        return (
            oracle.gradient(),
            oracle.gauss_newton_vector_product(v),
            oracle.hessian_vector_product(v),
        )

    eager = CurvatureOracle.from_keras(model, CTCLoss(), x, y)
    for graph, reference in zip(
        products(),
        (eager.gradient(), eager.gauss_newton_vector_product(v), eager.hessian_vector_product(v)),
    ):
        np.testing.assert_allclose(
            flatten(graph).numpy(), flatten(reference).numpy(), rtol=1e-9, atol=1e-12
        )


def test_float32_and_bad_vectors(ctc_batch):
    x, y = ctc_batch
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5, 2)), keras.layers.Dense(3)])
    oracle = CurvatureOracle.from_keras(model, CTCLoss(), x.astype(np.float32), y)
    gv = oracle.gauss_newton_vector_product([tf.ones_like(w) for w in model.trainable_variables])
    assert all(g.dtype == tf.float32 for g in gv)
    with pytest.raises(ValueError, match="unflatten"):
        oracle.gauss_newton_vector_product([tf.ones([6])])
