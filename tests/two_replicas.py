"""Runs a test script in a fresh process with 2 logical CPU devices and a MirroredStrategy.

Logical devices must be configured before TensorFlow initializes, and one process holds
one MirroredStrategy (two on the same devices clash in TF's collective instance keys,
with Keras' own optimizers too), hence a subprocess per script.
"""

import os
import subprocess
import sys
import textwrap

PRELUDE = textwrap.dedent("""
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
""")


def run_with_two_replicas(script: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Runs ``PRELUDE + script`` (``np``, ``tf``, ``keras``, ``strategy`` defined)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
