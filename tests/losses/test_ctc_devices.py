"""Device and compiler coverage: every op has a GPU kernel; XLA compiles everything."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import kernels

from ctc_newton import ctc_loss
from ctc_newton.losses import set_xla

LABELS = np.array([[1, 2, 2], [3, 0, 0]], np.int32)


def products(x, v, label_length, logit_length):
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            loss = tf.reduce_sum(ctc_loss(LABELS, x, label_length, logit_length))
        grad = inner.gradient(loss, x)
    return loss, grad, outer.gradient(grad, x, output_gradients=v)


def graph_ops(concrete):
    """Op types of a concrete function and every function it calls."""
    graph_def = concrete.graph.as_graph_def()
    ops = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        ops |= {node.op for node in function.node_def}
    return ops


def test_every_op_has_a_gpu_kernel():
    matmul = kernels.get_registered_kernels_for_op("MatMul").kernel
    if not any(k.device_type == "GPU" for k in matmul):
        pytest.skip("this TensorFlow build has no GPU kernels to check against")
    set_xla(False)  # inspect the plain TF ops that XLA would otherwise compile
    try:
        fn = tf.function(products).get_concrete_function(
            tf.TensorSpec([2, 6, 4], tf.float32),
            tf.TensorSpec([2, 6, 4], tf.float32),
            tf.TensorSpec([2], tf.int32),
            tf.TensorSpec([2], tf.int32),
        )
    finally:
        set_xla(True)
    structural = {
        "Placeholder",
        "NoOp",
        "Const",
        "Identity",
        "IdentityN",
        "While",
        "StatelessWhile",
        "PartitionedCall",
        "StatefulPartitionedCall",
        "_Arg",
        "_Retval",
        "Assert",
        "If",
        "StatelessIf",
    }  # control flow runs anywhere
    missing = sorted(
        op
        for op in graph_ops(fn) - structural
        if not any(k.device_type == "GPU" for k in kernels.get_registered_kernels_for_op(op).kernel)
    )
    assert not missing, f"ops without a GPU kernel: {missing}"


def test_loss_gradient_and_hvp_compile_under_jit_without_recompiling(rng):
    fn = tf.function(products, jit_compile=True)
    x = tf.constant(rng.standard_normal((2, 6, 4)), tf.float32)
    v = tf.constant(rng.standard_normal((2, 6, 4)), tf.float32)
    for label_length, logit_length in [([3, 1], [6, 5]), ([2, 1], [5, 3])]:
        got = fn(x, v, tf.constant(label_length), tf.constant(logit_length))
        want = products(x, v, tf.constant(label_length), tf.constant(logit_length))
        for a, b in zip(got, want):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert fn.experimental_get_tracing_count() == 1
