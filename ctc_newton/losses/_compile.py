"""XLA compilation of the CTC kernels, with a switch.

The recursions are loops over frames whose bodies are a few dozen tiny ops; XLA
fuses each body into a handful of kernels, which makes them ~3x faster on CPU and
is what GPUs need. The price is one compilation (~0.7 s on a 2-core CPU) per new
combination of batch size, frames, classes and label width; lengths are values
and never recompile. Workloads with ever-changing shapes can turn it off.
"""

import functools

import tensorflow as tf

_settings = {"xla": True}


def set_xla(enabled: bool) -> None:
    """Turns XLA compilation of the CTC kernels on (default) or off.

    Args:
      enabled: True to compile with XLA, False to run them as plain TF graphs.
    """
    _settings["xla"] = bool(enabled)


def xla_enabled() -> bool:
    """Whether the CTC kernels are compiled with XLA."""
    return _settings["xla"]


def compiled(fn):
    """Wraps ``fn`` as a graph function, XLA-compiled while `xla_enabled()`."""
    options = dict(autograph=False, reduce_retracing=True)
    with_xla = tf.function(fn, jit_compile=True, **options)
    without_xla = tf.function(fn, **options)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        return (with_xla if _settings["xla"] else without_xla)(*args, **kwargs)

    return call
