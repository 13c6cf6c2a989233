"""CTC loss differentiable twice, exactly, with O(B T S) time and memory.

The gradient is analytic (``softmax - occupancy``) and is itself a custom-gradient
op whose backward is the exact Hessian-vector product, computed with tangent
forward-backward recursions. Nested ``tf.GradientTape``s therefore give exact
second derivatives w.r.t. the logits and, through any model, w.r.t. its weights.
"""

import contextlib
import threading
from typing import Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from ctc_newton.losses import _recursion, _states, _validation
from ctc_newton.losses._lattice import Lattice, build_lattice
from ctc_newton.losses._recursion import forward_backward

__all__ = [
    "ctc_loss",
    "ctc_hessian_vector_product",
    "ctc_gauss_newton_vector_product",
    "CTCPoint",
    "gauss_newton_curvature",
]

_mode = threading.local()


@contextlib.contextmanager
def gauss_newton_curvature():
    """Within this context, the second derivative of `ctc_loss` is its Gauss-Newton.

    Differentiating the gradient of a `ctc_loss` created here gives the PSD CTC
    Gauss-Newton product (the frame-wise softmax Hessian, occupancies held fixed)
    instead of the exact, indefinite Hessian product. Composed with any reduction
    or weighting around the loss, nested tapes then give the output-space matrix
    of the generalized Gauss-Newton ``J^T H_out J``. The loss value and gradient
    are unchanged. Used by `ctc_newton.curvature.CurvatureOracle`.

    Yields:
      None.
    """
    previous = getattr(_mode, "gauss_newton", False)
    _mode.gauss_newton = True
    try:
        yield
    finally:
        _mode.gauss_newton = previous


TensorLike = Union[tf.Tensor, np.ndarray, list]


def compute_dtype(dtype: tf.DType) -> tf.DType:
    """The dtype the recursions run in: float64 for float64, float32 otherwise."""
    if not dtype.is_floating:
        raise TypeError(f"`logits` must be floating point, got {dtype.name}.")
    return tf.float64 if dtype == tf.float64 else tf.float32


class CTCPoint:
    """The CTC loss of one batch at one logit point, ready for derivatives.

    Holds the forward-backward pass so that the gradient and any number of
    Hessian or Gauss-Newton products reuse it (a CG solve runs dozens).

    Args:
      logits: ``[B, T, K]`` batch-major logits in a float compute dtype.
      lattice: the batch's `Lattice`.
      logit_length: ``[B]`` int32.
      zero_infinity: map infinite losses (infeasible alignments) to 0.
      invalid: ``[B]`` bool, sequences whose inputs failed validation (or None).

    Sequences that are invalid or hold NaN (or +inf) on a valid frame get a NaN
    loss, gradient and curvature products: never a number that looks like an
    infeasible alignment, and never one that ``zero_infinity`` hides.
    """

    def __init__(self, logits, lattice: Lattice, logit_length, zero_infinity=False, invalid=None):
        self.lattice = lattice
        # Derivatives are explicit (custom gradients): keep tapes out of the recursions,
        # which would otherwise record every loop intermediate.
        logits = tf.stop_gradient(logits)
        self._one_hot = _states.uses_one_hot(logits.shape[2])
        frame_mask = tf.range(tf.shape(logits)[1])[tf.newaxis, :] < logit_length[:, tf.newaxis]
        log_probs = _states.log_probabilities(logits, frame_mask)
        self.probs = tf.exp(log_probs)
        log_emissions = _states.state_log_emissions(log_probs, lattice.states, lattice.state_mask)
        self.fb = forward_backward(log_emissions, lattice, logit_length)
        self.logit_length = logit_length
        # Transition weights, stored from the second product on.
        self._weights: Optional[Tuple[tf.Tensor, tf.Tensor]] = None
        self._products = 0
        loss = -self.fb.log_likelihood
        finite = lattice.feasible & tf.math.is_finite(loss)
        fallback = 0.0 if zero_infinity else float("inf")
        # A NaN or +inf logit on a valid frame makes that frame's log-probabilities NaN
        # (padded frames were zeroed first), which the recursions carry into the loss.
        self.poisoned = tf.math.is_nan(loss)
        if invalid is not None:
            self.poisoned = self.poisoned | invalid
        loss = tf.where(finite, loss, tf.constant(fallback, loss.dtype))
        self.loss = self._poison(loss)
        # Frames that carry gradient and curvature: valid frames of finite sequences.
        self.live = (frame_mask & finite[:, tf.newaxis])[:, :, tf.newaxis]

    def _poison(self, x):
        """NaN on the poisoned sequences of a ``[B]`` or ``[B, T, K]`` tensor.

        Conditional: the common, clean batch pays one scalar test, not a pass over x.
        """

        def poison():
            mask = tf.reshape(self.poisoned, [-1] + [1] * (x.shape.rank - 1))
            return tf.where(mask, tf.constant(float("nan"), x.dtype), x)

        return tf.cond(tf.reduce_any(self.poisoned), poison, lambda: x)

    def gradient(self):
        """``[B, T, K]`` d loss_b / d logits: ``softmax - occupancy`` on live frames."""
        return self._poison(
            _states.gradient(
                self.probs,
                self.fb.log_alpha,
                self.fb.log_beta,
                self.lattice.states,
                self.live,
                self._one_hot,
            )
        )

    def gauss_newton_vector_product(self, vector):
        """``[B, T, K]`` the PSD CTC Gauss-Newton (frame-wise softmax Hessian) times v."""
        return self._poison(
            _states.gauss_newton_product(self.probs, tf.stop_gradient(vector), self.live)
        )

    def hessian_vector_product(self, vector):
        """``[B, T, K]`` the exact Hessian of ``sum_b loss_b`` times ``vector``."""
        vector = tf.stop_gradient(vector)
        state_direction = _states.state_direction(vector, self.live, self.lattice.states)
        log_skip = tf.math.log(self.lattice.skip)
        log_skip_next = tf.math.log(self.lattice.skip_next)
        self._products += 1
        if self._products == 1:  # One product: fused weights are fastest.
            prefix = _recursion.prefix_scores_at(
                self.fb, log_skip, state_direction, self.logit_length
            )
            suffix = _recursion.suffix_scores_at(
                self.fb, log_skip_next, state_direction, self.logit_length
            )
        else:  # Several at this point: store the transition weights once.
            if self._weights is None:
                self._weights = (
                    _recursion.prefix_weights(self.fb, log_skip, self.logit_length),
                    _recursion.suffix_weights(self.fb, log_skip_next),
                )
            prefix = _recursion.prefix_scores(self._weights[0], state_direction, self.logit_length)
            suffix = _recursion.suffix_scores(self._weights[1], state_direction, self.logit_length)
        return self._poison(
            _states.hessian_product(
                self.probs,
                vector,
                self.fb.log_alpha,
                self.fb.log_beta,
                prefix,
                suffix,
                self.lattice.states,
                self.live,
                self._one_hot,
            )
        )


def _sparse_to_dense(labels: tf.SparseTensor):
    """``[B, L]`` dense labels and ``[B]`` counts from a ``SparseTensor``.

    Each row's values are packed to the left in index order, so gaps in the column
    indices are ignored, as ``tf.nn.ctc_loss`` does.
    """
    labels = tf.sparse.reorder(labels)
    rows = tf.cast(labels.indices[:, 0], tf.int32)
    batch = tf.cast(labels.dense_shape[0], tf.int32)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(rows), rows, batch)
    positions = tf.range(tf.shape(rows)[0]) - tf.gather(tf.cumsum(counts, exclusive=True), rows)
    values = _validation.to_int32(labels.values, "labels")
    width = tf.cast(labels.dense_shape[1], tf.int32)
    dense = tf.scatter_nd(tf.stack([rows, positions], axis=1), values, [batch, width])
    return dense, counts


def _prepare(
    labels, logits, label_length, logit_length, logits_time_major, blank_index, validate_args
):
    """Validates and converts inputs.

    Returns:
      ``(logits, lattice, logit_length, invalid)``: batch-major compute-dtype logits
      with at least one frame, the lattice, int32 lengths, and ``[B]`` bool marking
      sequences whose values are invalid (None without ``validate_args``).
    """
    logits = tf.convert_to_tensor(logits, name="logits")
    work_dtype = compute_dtype(logits.dtype)
    _validation.check_rank(logits, 3, "logits")
    if isinstance(labels, tf.SparseTensor):
        _validation.check_rank(labels, 2, "labels")
        if not labels.dtype.is_integer:
            raise TypeError(f"`labels` must hold integer class ids, got {labels.dtype.name}.")
        labels, counts = _sparse_to_dense(labels)
        if label_length is None:
            label_length = counts
    else:
        labels = tf.convert_to_tensor(labels, name="labels")
        _validation.check_rank(labels, 2, "labels")
        if label_length is None:
            raise ValueError(
                "`label_length` is required with dense `labels`; it may be "
                "None only for a `tf.SparseTensor`."
            )
        if not labels.dtype.is_integer:
            raise TypeError(f"`labels` must hold integer class ids, got {labels.dtype.name}.")
    labels = _validation.to_int32(labels, "labels")
    label_length = _validation.to_int32(label_length, "label_length")
    logit_length = _validation.to_int32(logit_length, "logit_length")
    _validation.check_rank(label_length, 1, "label_length")
    _validation.check_rank(logit_length, 1, "logit_length")

    if logits_time_major:
        logits = tf.transpose(logits, [1, 0, 2])
    _validation.check_batch_sizes(
        [
            ("labels", labels.shape[0]),
            ("logits", logits.shape[0]),
            ("label_length", label_length.shape[0]),
            ("logit_length", logit_length.shape[0]),
        ]
    )
    num_classes = logits.shape[2]
    _validation.check_num_classes(num_classes)
    if num_classes is None:
        num_classes = tf.shape(logits)[2]
    blank = _validation.normalize_blank_index(blank_index, num_classes)
    num_frames = logits.shape[1] if logits.shape[1] is not None else tf.shape(logits)[1]
    invalid = None
    if validate_args:
        _validation.raise_static_problems(
            labels, label_length, logit_length, num_frames, num_classes, blank
        )
        problems = _validation.row_problems(
            labels, label_length, logit_length, num_frames, num_classes, blank
        )
        checks = _validation.runtime_checks(
            problems,
            tf.shape(labels)[0],
            label_length,
            logit_length,
            tf.shape(logits)[2],
            blank_index,
        )
        checks.append(
            tf.debugging.assert_equal(
                tf.shape(logits)[0],
                tf.shape(labels)[0],
                message="`logits` and `labels` disagree on the batch size.",
            )
        )
        with tf.control_dependencies(checks):
            labels = tf.identity(labels)
        # Where asserts cannot raise (XLA), an invalid sequence gets a NaN loss; its
        # lattice is made empty so that nothing out of range is gathered.
        invalid = tf.reduce_any(tf.stack([bad for _, bad in problems]), axis=0)
        label_length = tf.where(invalid, 0, label_length)
        logit_length = tf.where(invalid, 0, logit_length)
    logits = _at_least_one_frame(tf.cast(logits, work_dtype))
    lattice = build_lattice(labels, label_length, logit_length, blank, work_dtype)
    return logits, lattice, logit_length, invalid


def _at_least_one_frame(x):
    """Pads ``[B, T, K]`` to one (ignored) frame when ``T = 0``: the recursions need one.

    The pad's gradient slices it off again.
    """
    if x.shape[1] is not None and x.shape[1] > 0:
        return x
    return tf.pad(x, [[0, 0], [0, tf.maximum(1 - tf.shape(x)[1], 0)], [0, 0]])


def _hessian_op(point: CTCPoint, vector, logits, gauss_newton: bool):
    """``point.hessian_vector_product(vector)`` (or the Gauss-Newton product) as an op
    whose own derivative raises.

    Connecting it to ``logits`` makes a third derivative fail loudly instead of
    coming back as None (the products are computed with explicit formulas).
    """

    @tf.custom_gradient
    def op(v, x):
        del x

        def third_order(_):
            raise LookupError(
                "ctc_newton.ctc_loss supports derivatives up to second order; "
                "a third derivative was requested."
            )

        if gauss_newton:
            return point.gauss_newton_vector_product(v), third_order
        return point.hessian_vector_product(v), third_order

    return op(vector, logits)


def ctc_loss(
    labels: Union[TensorLike, tf.SparseTensor],
    logits: TensorLike,
    label_length: Optional[TensorLike],
    logit_length: TensorLike,
    *,
    logits_time_major: bool = False,
    blank_index: int = 0,
    zero_infinity: bool = False,
    validate_args: bool = True,
    name: Optional[str] = None,
) -> tf.Tensor:
    """Connectionist temporal classification loss, differentiable twice.

    Computes ``-log p(labels | logits)`` per sequence. The gradient w.r.t. the
    logits is exact (``softmax - occupancy``), and differentiating the gradient
    again (nested ``tf.GradientTape``s) gives exact Hessian-vector products, also
    through any model that produced the logits.

    Args:
      labels: ``[B, L]`` integer class ids, padded past ``label_length`` with any
        value, or a ``tf.SparseTensor`` of dense shape ``[B, L]``.
      logits: ``[B, T, K]`` unnormalized log-probabilities (``[T, B, K]`` when
        ``logits_time_major``). float32 or float64; float16/bfloat16 are
        computed in float32 and the loss returned in the input dtype. Values on
        frames past ``logit_length`` are ignored, even NaN or inf.
      label_length: ``[B]`` number of labels of each sequence; may be None when
        ``labels`` is sparse (then taken from its indices).
      logit_length: ``[B]`` number of valid frames of each sequence.
      logits_time_major: whether ``logits`` is ``[T, B, K]``.
      blank_index: class id of the blank, in ``[-K, K)``; negative counts from the end.
      zero_infinity: if True, sequences whose loss is infinite (no alignment fits
        in ``logit_length`` frames) get loss 0 and gradient 0 instead of ``+inf``.
      validate_args: run-time checks of the values (label ids in ``[0, K)`` and not
        blank inside ``label_length``, lengths within the tensors and
        non-negative). Turn off only for speed on trusted input; static
        problems (ranks, batch sizes, K = 0, blank out of range) always raise.
      name: optional name scope.

    Returns:
      ``[B]`` loss per sequence, in the dtype of ``logits``. ``+inf`` (zero
      gradient) where the labels need more frames than given, unless
      ``zero_infinity``.

    Raises:
      ValueError: wrong ranks, disagreeing batch sizes, K = 0, ``blank_index``
        out of range, or dense labels without ``label_length``.
      TypeError: non-floating logits or non-integer labels.
      tf.errors.InvalidArgumentError: (with ``validate_args``) bad label ids or lengths.
    """
    with tf.name_scope(name or "ctc_loss"):
        logits = tf.convert_to_tensor(logits, name="logits")
        work_logits, lattice, logit_length, invalid = _prepare(
            labels,
            logits,
            label_length,
            logit_length,
            logits_time_major,
            blank_index,
            validate_args,
        )

        gauss_newton = getattr(_mode, "gauss_newton", False)

        @tf.custom_gradient
        def loss_fn(x):
            point = CTCPoint(x, lattice, logit_length, zero_infinity, invalid)

            @tf.custom_gradient
            def gradient_fn(y):
                # The point already holds everything at y.
                return point.gradient(), lambda u: _hessian_op(point, u, y, gauss_newton)

            def backward(upstream):
                return upstream[:, tf.newaxis, tf.newaxis] * gradient_fn(x)

            return point.loss, backward

        loss = loss_fn(work_logits)
        return tf.cast(loss, logits.dtype)


def _point(
    labels,
    logits,
    label_length,
    logit_length,
    logits_time_major,
    blank_index,
    zero_infinity,
    validate_args,
):
    work_logits, lattice, logit_length, invalid = _prepare(
        labels, logits, label_length, logit_length, logits_time_major, blank_index, validate_args
    )
    return CTCPoint(work_logits, lattice, logit_length, zero_infinity, invalid)


def _to_layout(x, time_major, dtype):
    """Between the caller's layout and the internal batch-major one."""
    x = tf.transpose(x, [1, 0, 2]) if time_major else x
    return tf.cast(x, dtype)


def ctc_hessian_vector_product(
    labels,
    logits,
    label_length,
    logit_length,
    vector,
    *,
    logits_time_major: bool = False,
    blank_index: int = 0,
    zero_infinity: bool = False,
    validate_args: bool = True,
) -> tf.Tensor:
    """Exact Hessian of ``sum_b ctc_loss_b`` w.r.t. the logits, times ``vector``.

    Equal to the nested-tape product through `ctc_loss` but without tapes. The
    Hessian is ``blockdiag_t(diag(y_t) - y_t y_t^T) - Cov_{pi|z,x}(e(pi))``:
    indefinite in general.

    ``labels``, ``logits``, ``label_length``, ``logit_length``,
    ``logits_time_major``, ``blank_index``, ``zero_infinity`` and
    ``validate_args`` are as in `ctc_loss`.

    Args:
      vector: a tensor shaped like ``logits``.

    Returns:
      A tensor shaped like ``logits`` (zero on padded frames and infinite-loss
      sequences).
    """
    logits = tf.convert_to_tensor(logits, name="logits")
    point = _point(
        labels,
        logits,
        label_length,
        logit_length,
        logits_time_major,
        blank_index,
        zero_infinity,
        validate_args,
    )
    vector = _to_layout(tf.convert_to_tensor(vector), logits_time_major, point.probs.dtype)
    num_frames = tf.shape(vector)[1]
    product = point.hessian_vector_product(_at_least_one_frame(vector))[:, :num_frames]
    return _to_layout(product, logits_time_major, logits.dtype)


def ctc_gauss_newton_vector_product(
    logits, logit_length, vector, *, logits_time_major: bool = False
) -> tf.Tensor:
    """The positive semi-definite CTC Gauss-Newton matrix times ``vector``.

    Holding the occupancies fixed turns CTC into frame-wise softmax cross-entropy
    (Cho et al., 2015); its Hessian ``blockdiag_t(diag(y_t) - y_t y_t^T)`` is PSD
    and agrees with CTC's gradient at the current point. The labels do not enter.

    Args:
      logits: ``[B, T, K]`` (or ``[T, B, K]`` when ``logits_time_major``).
      logit_length: ``[B]`` number of valid frames.
      vector: a tensor shaped like ``logits``.
      logits_time_major: layout of ``logits`` and ``vector``.

    Returns:
      ``(diag(y_t) - y_t y_t^T) v_t`` on frames ``t < logit_length``, zero elsewhere,
      shaped like ``logits``.
    """
    logits = tf.convert_to_tensor(logits, name="logits")
    _validation.check_rank(logits, 3, "logits")
    work_dtype = compute_dtype(logits.dtype)
    x = _to_layout(logits, logits_time_major, work_dtype)
    v = _to_layout(tf.convert_to_tensor(vector), logits_time_major, work_dtype)
    logit_length = tf.cast(logit_length, tf.int32)
    live = (tf.range(tf.shape(x)[1])[tf.newaxis, :] < logit_length[:, tf.newaxis])[..., None]
    probs = tf.nn.softmax(tf.where(live, x, tf.zeros_like(x)))
    product = _states.gauss_newton_product(probs, v, live)
    return _to_layout(product, logits_time_major, logits.dtype)
