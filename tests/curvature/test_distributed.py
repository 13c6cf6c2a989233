"""Under MirroredStrategy with 2 replicas, oracle quantities equal the global-batch ones.

Both inside ``strategy.run`` (each replica's oracle all-reduces) and from cross-replica
context (`DistributedKerasOracle`, what ``fit`` uses).
"""

from tests.two_replicas import run_with_two_replicas

SCRIPT = """
    from ctc_newton import CTCLoss, CurvatureOracle
    from ctc_newton.curvature import flatten, keras_oracle

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 6, 3))
    y = rng.integers(1, 4, size=(8, 2)).astype(np.int32)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6, 3), dtype="float64"),
                                  keras.layers.GRU(4, return_sequences=True, dtype="float64",
                                                   kernel_regularizer=keras.regularizers.L2(0.1)),
                                  keras.layers.Dense(4, dtype="float64")])
    v = [tf.constant(rng.standard_normal(w.shape)) for w in model.trainable_variables]
    loss = CTCLoss()
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(8))
    xs, ys = next(iter(dataset))

    @tf.function
    def per_replica(xr, yr):
        oracle = CurvatureOracle.from_keras(model, loss, xr, yr)
        return (oracle.value(), flatten(oracle.gradient()),
                flatten(oracle.gauss_newton_vector_product(v)),
                flatten(oracle.hessian_vector_product(v)), oracle.evaluate(),
                flatten(oracle.squared_gradient_diagonal()))

    results = strategy.run(per_replica, args=(xs, ys))
    replicas = [strategy.experimental_local_results(r) for r in results]

    @tf.function  # eagerly, the GRU's per-example gradients take most of a minute
    def global_batch():
        single = CurvatureOracle.from_keras(model, loss, x, y)
        return (single.value(), flatten(single.gradient()),
                flatten(single.gauss_newton_vector_product(v)),
                flatten(single.hessian_vector_product(v)), single.evaluate(),
                flatten(single.squared_gradient_diagonal()))

    expected = global_batch()
    names = ["value", "gradient", "gauss_newton", "hessian", "evaluate", "squared_gradient"]
    for name, got, want in zip(names, replicas, expected):
        for replica in got:
            np.testing.assert_allclose(replica.numpy(), want.numpy(), rtol=1e-9, atol=1e-12,
                                       err_msg=name)
    print("REPLICAS-OK", len(replicas[0]))

    # Cross-replica: one oracle over the shards, each quantity run on every replica.
    with strategy.scope():
        distributed = keras_oracle(model, loss, xs, ys)
    assert type(distributed).__name__ == "DistributedKerasOracle"
    got = (distributed.value(), flatten(distributed.gradient()),
           flatten(distributed.gauss_newton_vector_product(v)),
           flatten(distributed.hessian_vector_product(v)))
    for name, g, want in zip(names, got, expected):
        np.testing.assert_allclose(g.numpy(), want.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=name)
    np.testing.assert_allclose(flatten(distributed.squared_gradient_diagonal()).numpy(),
                               expected[5].numpy(), rtol=1e-9, atol=1e-14)
    for w, dw in zip(model.trainable_variables, v):
        w.assign_add(0.1 * dw)
    np.testing.assert_allclose(distributed.evaluate().numpy(),
                               CurvatureOracle.from_keras(model, loss, x, y).value().numpy(),
                               rtol=1e-12)
    outputs = strategy.experimental_local_results(distributed.outputs())
    assert [o.shape[0] for o in outputs] == [4, 4]
    try:
        keras_oracle(model, loss, xs, ys)
    except ValueError as error:
        assert "strategy.scope()" in str(error)
    else:
        raise AssertionError("per-replica values outside the scope were accepted")
    print("CROSS-REPLICA-OK")
"""


def test_two_replicas_sum_to_the_global_batch_quantities():
    out = run_with_two_replicas(SCRIPT)
    assert "REPLICAS-OK 2" in out.stdout, out.stderr[-3000:]
    assert "CROSS-REPLICA-OK" in out.stdout, out.stderr[-3000:]
