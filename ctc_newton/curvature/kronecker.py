"""Kronecker-factored blocks of the Gauss-Newton of a Keras model (K-FAC's curvature).

For a weight matrix used as ``s = W^T a`` at positions ``p`` (examples, frames,
convolution windows) the Gauss-Newton block is approximated, as in Martens &
Grosse 2015 (dense layers) and Grosse & Martens 2016 (positions treated as extra
examples: their "KFC" independence assumption), by

    G_W ~= A (x) S,   A = mean_p a_p a_p^T,   S = sum_p ds_p ds_p^T,

where ``ds_p`` are the gradients at the pre-activations of output cotangents
``u`` with ``E[u u^T] = H_out`` (`ctc_newton.curvature.output_sampling`), so
``E[S]`` carries the loss's weighting. A bias is the weight of a constant input
1 appended to ``a``. Covered:

- ``Dense`` (any leading dimensions: time-distributed use on ``[B, T, F]``);
- ``Conv1D`` (channels last, no groups): ``a_p`` is the input window;
- ``Embedding``: ``A`` is diagonal (token frequencies);
- the input ``kernel`` of ``GRU``/``LSTM`` (no input dropout), time steps as
  extra examples (the independence baseline of Martens, Ba & Johnson 2018).
  The pre-activation gradients come from running the layer on ``x W`` with an
  identity kernel, which computes the same function;
- every other trainable variable (recurrent kernels, RNN biases, normalization
  scales): a diagonal block, ``E[g^2]`` of the sampled gradient ``g``; with
  independent zero-mean cotangents this is an unbiased estimate of the
  Gauss-Newton diagonal.

`KroneckerFactors` plans the blocks for a model and computes one batch's
statistics in one graph function; the blocks turn averaged statistics into
eigendecompositions and apply the factored-Tikhonov-damped inverse
``(A + pi gamma I)^-1 V (S + gamma / pi I)^-1`` with ``gamma = sqrt(damping)``
(Martens & Grosse 2015, section 6.3).
"""

import contextlib
from typing import Any, Dict, List, Sequence, Tuple

import keras
import tensorflow as tf

from ctc_newton._keras_adapter import flatten_layers, get_keras_mask
from ctc_newton.curvature.oracle import as_keras_loss
from ctc_newton.curvature.output_sampling import output_cotangents, supports

__all__ = ["KroneckerFactors", "KroneckerBlock", "EmbeddingBlock", "DiagonalBlock"]


class Block:
    """A diagonal block of the approximate curvature over some of the variables.

    Attributes:
      indices: positions of its variables in ``model.trainable_variables``.
      name: what it is (for messages and state names).
    """

    indices: Tuple[int, ...]
    name: str

    def factor_shapes(self) -> List[Tuple[int, ...]]:
        raise NotImplementedError

    def eigen_shapes(self) -> List[Tuple[int, ...]]:
        raise NotImplementedError

    def eigen(self, factors: Sequence[tf.Tensor]) -> List[tf.Tensor]:
        raise NotImplementedError

    def precondition(self, grads, eigen, damping) -> List[tf.Tensor]:
        raise NotImplementedError


def _symmetric_eigen(matrix):
    values, vectors = tf.linalg.eigh(0.5 * (matrix + tf.transpose(matrix)))
    return [vectors, tf.maximum(values, 0.0)]


def _pi(a_values, s_values):
    """Martens & Grosse's ``pi``: the factors' mean eigenvalues balanced (1 if degenerate)."""
    ratio = tf.reduce_mean(a_values) / tf.reduce_mean(s_values)
    ok = tf.math.is_finite(ratio) & (ratio > 0)
    return tf.sqrt(tf.where(ok, ratio, tf.ones_like(ratio)))


class KroneckerBlock(Block):
    """``A (x) S`` over a kernel reshaped to ``[inputs, outputs]`` (and its bias row)."""

    def __init__(self, name, kernel_index, bias_index, kernel_shape):
        self.name = name
        self.kernel_shape = tuple(kernel_shape)
        self.indices = (kernel_index,) if bias_index is None else (kernel_index, bias_index)
        self.has_bias = bias_index is not None
        self.outputs = int(kernel_shape[-1])
        self.inputs = int(tf.reduce_prod(kernel_shape[:-1])) + int(self.has_bias)

    def factor_shapes(self):
        return [(self.inputs, self.inputs), (self.outputs, self.outputs)]

    def eigen_shapes(self):
        return [
            (self.inputs, self.inputs),
            (self.inputs,),
            (self.outputs, self.outputs),
            (self.outputs,),
        ]

    def eigen(self, factors):
        return _symmetric_eigen(factors[0]) + _symmetric_eigen(factors[1])

    def input_rows(self, inputs) -> tf.Tensor:
        """``[positions, inputs]`` rows ``a_p`` (with the constant 1 for a bias)."""
        rows = tf.reshape(inputs, [-1, self.inputs - int(self.has_bias)])
        if self.has_bias:
            rows = tf.concat([rows, tf.ones_like(rows[:, :1])], axis=1)
        return rows

    def to_matrix(self, grads):
        matrix = tf.reshape(grads[0], [-1, self.outputs])
        if self.has_bias:
            matrix = tf.concat([matrix, tf.reshape(grads[1], [1, -1])], axis=0)
        return matrix

    def from_matrix(self, matrix):
        if not self.has_bias:
            return [tf.reshape(matrix, self.kernel_shape)]
        return [tf.reshape(matrix[:-1], self.kernel_shape), matrix[-1]]

    def precondition(self, grads, eigen, damping):
        qa, da, qs, ds = eigen
        gamma = tf.sqrt(damping)
        pi = _pi(da, ds)
        v = tf.transpose(qa) @ self.to_matrix(grads) @ qs
        v = v / ((da + pi * gamma)[:, tf.newaxis] * (ds + gamma / pi)[tf.newaxis, :])
        return self.from_matrix(qa @ v @ tf.transpose(qs))


class EmbeddingBlock(KroneckerBlock):
    """``diag(a) (x) S`` for an embedding table (a one-hot input has a diagonal ``A``)."""

    def __init__(self, name, index, shape):
        super().__init__(name, index, None, shape)

    def factor_shapes(self):
        return [(self.inputs,), (self.outputs, self.outputs)]

    def eigen_shapes(self):
        return [(self.inputs,), (self.outputs, self.outputs), (self.outputs,)]

    def eigen(self, factors):
        return [tf.maximum(factors[0], 0.0)] + _symmetric_eigen(factors[1])

    def precondition(self, grads, eigen, damping):
        da, qs, ds = eigen
        gamma = tf.sqrt(damping)
        pi = _pi(da, ds)
        v = self.to_matrix(grads) / (da + pi * gamma)[:, tf.newaxis]
        v = ((v @ qs) / (ds + gamma / pi)[tf.newaxis, :]) @ tf.transpose(qs)
        return self.from_matrix(v)


class DiagonalBlock(Block):
    """``diag(E[g^2])`` for one variable no Kronecker block covers."""

    def __init__(self, name, index, shape):
        self.name = name
        self.indices = (index,)
        self.shape = tuple(shape)

    def factor_shapes(self):
        return [self.shape]

    def eigen_shapes(self):
        return [self.shape]

    def eigen(self, factors):
        return [tf.maximum(factors[0], 0.0)]

    def precondition(self, grads, eigen, damping):
        return [grads[0] / (eigen[0] + damping)]


# ---------------------------------------------------------------- recording layers
# Each entry patches one layer for one forward pass so that it records
# ``(input rows, pre-activations)``; the statistics backpropagate to the latter.


def _unpatch(obj, name, original, had):
    if had:
        object.__setattr__(obj, name, original)
    else:
        object.__delattr__(obj, name)


class _Recorder:
    """Patches the planned layers during one forward pass; ``records[i]`` holds block
    i's ``(inputs, pre-activations)`` per call of its layer."""

    def __init__(self, plan):
        self.plan = plan  # [(block index, layer, kind)]
        self.records: Dict[int, List[Tuple[tf.Tensor, tf.Tensor, Any]]] = {}

    @contextlib.contextmanager
    def patched(self):
        undo = []
        try:
            for index, layer, kind in self.plan:
                undo.extend(getattr(self, f"_patch_{kind}")(index, layer))
            yield self
        finally:
            for entry in reversed(undo):
                _unpatch(*entry)

    def _record(self, index, inputs, pre, mask=None):
        self.records.setdefault(index, []).append((inputs, pre, mask))

    @staticmethod
    def _mask(inputs, kwargs):
        """The ``[B, T]`` Keras mask of a call's inputs (padded frames), if any."""
        mask = kwargs.get("mask")
        if mask is None:
            mask = get_keras_mask(inputs)
        if mask is None or mask.shape.rank != inputs.shape.rank - 1:
            return None
        return mask

    @staticmethod
    def _patch(obj, name, value):
        # object.__setattr__: Keras' own would track the patch as layer state.
        had = name in obj.__dict__
        original = obj.__dict__.get(name)
        object.__setattr__(obj, name, value)
        return (obj, name, original, had)

    def _patch_activation_layer(self, index, layer, window=None):
        call, activation = layer.call, layer.activation
        pending = []

        def recording_call(inputs, *args, **kwargs):
            if window is None:
                pending.append((inputs, self._mask(inputs, kwargs)))
            else:  # a mask does not survive the windows
                pending.append((window(inputs), None))
            return call(inputs, *args, **kwargs)

        def recording_activation(pre):
            inputs, mask = pending.pop()
            self._record(index, inputs, pre, mask)
            return activation(pre)

        return [
            self._patch(layer, "call", recording_call),
            self._patch(layer, "activation", recording_activation),
        ]

    def _patch_dense(self, index, layer):
        return self._patch_activation_layer(index, layer)

    def _patch_conv1d(self, index, layer):
        size, stride, rate = layer.kernel_size[0], layer.strides[0], layer.dilation_rate[0]

        def window(inputs):
            padding = layer.padding.upper()
            if padding == "CAUSAL":
                inputs = tf.pad(inputs, [[0, 0], [rate * (size - 1), 0], [0, 0]])
                padding = "VALID"
            patches = tf.image.extract_patches(
                inputs[:, :, tf.newaxis, :],
                sizes=[1, size, 1, 1],
                strides=[1, stride, 1, 1],
                rates=[1, rate, 1, 1],
                padding=padding,
            )
            return patches[:, :, 0, :]

        return self._patch_activation_layer(index, layer, window)

    def _patch_embedding(self, index, layer):
        call = layer.call

        def recording_call(inputs, *args, **kwargs):
            outputs = tf.identity(call(inputs, *args, **kwargs))
            self._record(index, inputs, outputs)
            return outputs

        return [self._patch(layer, "call", recording_call)]

    def _patch_recurrent(self, index, layer):
        call, cell = layer.call, layer.cell

        def recording_call(sequences, *args, **kwargs):
            projected = tf.matmul(sequences, tf.cast(cell.kernel, sequences.dtype))
            self._record(index, sequences, projected, self._mask(sequences, kwargs))
            identity = tf.eye(projected.shape[-1], dtype=projected.dtype)
            undo = self._patch(cell, "kernel", identity)
            try:
                return call(projected, *args, **kwargs)
            finally:
                _unpatch(*undo)

        return [self._patch(layer, "call", recording_call)]


def _layer_plan(layer):
    """``(kind, kernel, bias)`` when ``layer`` has a Kronecker block, else None."""
    if isinstance(layer, keras.layers.Dense) and not getattr(layer, "lora_enabled", False):
        return "dense", layer.kernel, layer.bias
    if (
        isinstance(layer, keras.layers.Conv1D)
        and layer.data_format == "channels_last"
        and layer.groups == 1
        and not isinstance(layer, keras.layers.Conv1DTranspose)
    ):
        return "conv1d", layer.kernel, layer.bias
    if isinstance(layer, keras.layers.Embedding) and not getattr(layer, "lora_enabled", False):
        return "embedding", layer.embeddings, None
    if isinstance(layer, (keras.layers.GRU, keras.layers.LSTM)) and not layer.cell.dropout:
        return "recurrent", layer.cell.kernel, None
    return None


class KroneckerFactors:
    """The K-FAC block plan of a Keras model and its per-batch statistics.

    Args:
      model: a built Keras model with one output.
      loss: its loss (a registered output distribution, see
        `ctc_newton.curvature.output_sampling`).
      exact: ``S`` from the columns of a square root of ``H_out`` (one backward
        pass per output class or unit) instead of one sampled cotangent.

    Attributes:
      blocks: one `Block` per Kronecker-factored layer or leftover variable,
        covering every trainable variable once.

    Raises:
      ValueError: the loss has no output distribution, or the model is unbuilt.
    """

    def __init__(self, model, loss, exact: bool = False):
        loss = as_keras_loss(loss)
        if not supports(loss):
            output_cotangents(loss, None, None)  # raises with the message
        variables = list(model.trainable_variables)
        if not variables:
            raise ValueError("`model` has no trainable variables; build it first.")
        self.model, self.loss, self.exact = model, loss, exact
        index_of = {id(v): i for i, v in enumerate(variables)}
        self.blocks: List[Block] = []
        plan = []
        covered: set = set()
        for layer in flatten_layers(model):
            found = _layer_plan(layer)
            if found is None:
                continue
            kind, kernel, bias = found
            if id(kernel) not in index_of or (bias is not None and id(bias) not in index_of):
                continue  # frozen: nothing to precondition
            k = index_of[id(kernel)]
            b = index_of[id(bias)] if bias is not None else None
            if kind == "embedding":
                block: Block = EmbeddingBlock(layer.name, k, kernel.shape)
            else:
                block = KroneckerBlock(layer.name, k, b, kernel.shape)
            plan.append((len(self.blocks), layer, kind))
            self.blocks.append(block)
            covered.update(block.indices)
        for i, variable in enumerate(variables):
            if i not in covered:
                self.blocks.append(DiagonalBlock(variable.path, i, variable.shape))
        self._plan = plan
        self._diagonal = [(n, b) for n, b in enumerate(self.blocks) if isinstance(b, DiagonalBlock)]
        self.dtype = tf.as_dtype(variables[0].dtype)
        self.statistics = tf.function(self._statistics, reduce_retracing=True, autograph=False)

    @property
    def num_kronecker_blocks(self) -> int:
        return len(self._plan)

    def rows(self, x, y, sample_weight, seed):
        """What the statistics are made of, from one forward and backward pass.

        Returns:
          ``(inputs, pre_gradients, diagonal_gradients)``: per Kronecker block its
          ``[positions, inputs]`` rows ``a_p`` (token ids for an embedding; rows of
          padded frames, by the layer's Keras mask, are zero) and their count; per
          output cotangent, per Kronecker block the ``[positions, outputs]`` rows
          ``ds_p``, and the gradients of the diagonal blocks' variables. For each
          cotangent ``sum_p a_p ds_p^T`` is the gradient of the block's weights.
        """
        recorder = _Recorder(self._plan)
        variables = self.model.trainable_variables
        sources = [variables[b.indices[0]] for _, b in self._diagonal]
        sources = [v.value if isinstance(v, keras.Variable) else v for v in sources]
        with recorder.patched():
            with tf.GradientTape(persistent=self.exact) as tape:
                tape.watch(sources)
                outputs = self.model(x, training=True)
        cotangents = output_cotangents(self.loss, y, outputs, sample_weight, seed, self.exact)
        dtype = self.dtype
        inputs = []
        for n, _, kind in self._plan:
            calls = recorder.records[n]
            if kind == "embedding":
                ids = tf.concat([tf.reshape(tf.cast(a, tf.int32), [-1]) for a, _, _ in calls], 0)
                inputs.append((ids, tf.cast(tf.size(ids), dtype)))
                continue
            block = self.blocks[n]
            assert isinstance(block, KroneckerBlock)
            rows, weights = [], []
            for a, _, mask in calls:
                a_rows = block.input_rows(tf.cast(a, dtype))
                weight = tf.ones_like(a_rows[:, :1])
                if mask is not None:  # padded frames are not positions
                    weight = tf.cast(tf.reshape(mask, [-1, 1]), dtype)
                rows.append(a_rows * weight)
                weights.append(weight)
            inputs.append((tf.concat(rows, 0), tf.reduce_sum(tf.concat(weights, 0))))
        pre = [[p for _, p, _ in recorder.records[n]] for n, _, _ in self._plan]
        pre_gradients, diagonal_gradients = [], []
        for u in cotangents:
            grads = tape.gradient(
                outputs,
                [p for calls in pre for p in calls] + sources,
                output_gradients=u,
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
            grads = [tf.cast(g, dtype) for g in grads]
            per_block, position = [], 0
            for (n, _, _), calls in zip(self._plan, pre):
                width = self.blocks[n].factor_shapes()[-1][0]
                part = grads[position : position + len(calls)]
                per_block.append(tf.concat([tf.reshape(g, [-1, width]) for g in part], 0))
                position += len(calls)
            pre_gradients.append(per_block)
            diagonal_gradients.append(grads[position:])
        return inputs, pre_gradients, diagonal_gradients

    def _statistics(self, x, y, sample_weight, seed):
        """One batch's factors, block by block (``factor_shapes`` order).

        In a replica context of a multi-replica strategy each replica draws its own
        classes and the sums are all-reduced: the factors are the global batch's.
        """
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        if replicas > 1:
            seed = seed + tf.stack([0, 1_000_003 * context.replica_id_in_sync_group])
        inputs, pre_gradients, diagonal_gradients = self.rows(x, y, sample_weight, seed)
        dtype = self.dtype
        sums: List[List[tf.Tensor]] = [[] for _ in self.blocks]
        counts = []
        for j, (n, _, kind) in enumerate(self._plan):
            block = self.blocks[n]
            assert isinstance(block, KroneckerBlock)
            rows, count = inputs[j]
            if kind == "embedding":
                size = block.factor_shapes()[0][0]
                a_sum = tf.math.bincount(rows, minlength=size, maxlength=size, dtype=dtype)
            else:
                a_sum = tf.matmul(rows, rows, transpose_a=True)
            s_sum = tf.add_n([tf.matmul(g[j], g[j], transpose_a=True) for g in pre_gradients])
            sums[n] = [a_sum, s_sum]
            counts.append(count)
        for k, (n, _) in enumerate(self._diagonal):
            sums[n] = [tf.add_n([tf.square(g[k]) for g in diagonal_gradients])]
        if replicas > 1:
            assert context is not None
            sums, counts = context.all_reduce(tf.distribute.ReduceOp.SUM, (sums, counts))
        for j, (n, _, _) in enumerate(self._plan):
            sums[n][0] = sums[n][0] / tf.maximum(counts[j], 1)  # A: a mean over positions
        return sums

    def precondition(self, grads: Sequence[tf.Tensor], eigen, damping) -> List[tf.Tensor]:
        """The damped inverse of the blocks applied to a structured vector.

        Args:
          grads: shaped like ``model.trainable_variables``.
          eigen: per block, its `Block.eigen` tensors.
          damping: ``lambda`` (a scalar tensor).

        Returns:
          A structured vector.
        """
        out: List[tf.Tensor] = [tf.zeros(())] * len(grads)
        for block, state in zip(self.blocks, eigen):
            parts = block.precondition([grads[i] for i in block.indices], state, damping)
            for i, part in zip(block.indices, parts):
                out[i] = part
        return out
