"""The CTC alignment lattice: blank-interleaved labels and their allowed moves.

For a label sequence ``z`` of length ``L`` the extended sequence ``z'`` has
``S = 2 L + 1`` states ``[blank, z_1, blank, z_2, ..., z_L, blank]``. A path moves
from state ``s`` to ``s``, ``s + 1`` or, when ``z'_s`` is a label that differs from
``z'_{s-2}``, skips the blank in between (``s - 2 -> s``). Everything here is
batched over sequences of different label lengths: states past ``2 L + 1`` are
masked out.
"""

from typing import NamedTuple

import tensorflow as tf


class Lattice(NamedTuple):
    """Per-batch structure of the alignment lattice (all shapes ``[B, S]`` unless noted).

    Attributes:
      states: int32 class id of each extended-label state (blank on padding states).
      state_mask: 1 for real states (``s < 2 L + 1``), 0 for padding.
      skip: 1 where the move ``s - 2 -> s`` is allowed.
      skip_next: ``skip`` shifted left by two (``skip[s + 2]``), used by the
        backward recursion.
      final: 1 on the states a path may end in (``s = 2 L`` and ``s = 2 L - 1``).
      feasible: ``[B]`` bool, whether the label fits in ``logit_length`` frames
        (``L + number of adjacent repeats <= logit_length``).
    """

    states: tf.Tensor
    state_mask: tf.Tensor
    skip: tf.Tensor
    skip_next: tf.Tensor
    final: tf.Tensor
    feasible: tf.Tensor


def build_lattice(labels, label_length, logit_length, blank_index, dtype) -> Lattice:
    """Builds the lattice for dense ``labels [B, L]`` (values past ``label_length`` ignored)."""
    batch = tf.shape(labels)[0]
    max_len = tf.shape(labels)[1]
    num_states = 2 * max_len + 1
    positions = tf.range(max_len)[tf.newaxis, :]
    in_label = positions < label_length[:, tf.newaxis]
    labels = tf.where(in_label, labels, blank_index)

    blanks = tf.fill([batch, max_len], blank_index)
    states = tf.reshape(tf.stack([blanks, labels], axis=2), [batch, 2 * max_len])
    states = tf.concat([states, tf.fill([batch, 1], blank_index)], axis=1)

    state_index = tf.range(num_states)[tf.newaxis, :]
    num_real = 2 * label_length[:, tf.newaxis] + 1
    state_mask = state_index < num_real

    # Label states (odd s >= 3) may be entered from s - 2 unless they repeat it.
    previous = tf.pad(states, [[0, 0], [2, 0]], constant_values=-1)[:, :num_states]
    is_label = tf.math.equal(state_index % 2, 1)
    skip = is_label & (state_index >= 3) & tf.not_equal(states, previous) & state_mask

    final = (state_index >= num_real - 2) & state_mask

    repeats = tf.reduce_sum(
        tf.cast(tf.equal(labels[:, 1:], labels[:, :-1]) & in_label[:, 1:], tf.int32), axis=1
    )
    feasible = label_length + repeats <= logit_length

    def cast(x):
        return tf.cast(x, dtype)

    skip_next = tf.pad(cast(skip), [[0, 0], [0, 2]])[:, 2:]
    return Lattice(states, cast(state_mask), cast(skip), skip_next, cast(final), feasible)
