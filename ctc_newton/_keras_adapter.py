"""Every private Keras symbol ctc_newton uses, in one place.

Keras 3 does not export these. Each is looked up here, by name, with an error
that says which symbol is missing and what to install, so a Keras release that
moves one fails at import with that message instead of deep inside ``fit``;
``tests/test_keras_adapter.py`` checks that each still behaves as used.
"""

import importlib

import keras


def _private(module: str, name: str):
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise ImportError(
            f"ctc_newton needs the Keras-internal `{module}.{name}`, which Keras "
            f"{keras.__version__} does not have: install the Keras version pinned by "
            "ctc_newton (see its pyproject.toml) or report the Keras change."
        ) from error


# Training loop: the trainer whose train step fit() runs, and its replica reduction.
TensorFlowTrainer = _private("keras.src.backend.tensorflow.trainer", "TensorFlowTrainer")
reduce_per_replica = _private("keras.src.backend.tensorflow.trainer", "reduce_per_replica")
unpack_x_y_sample_weight = _private(
    "keras.src.trainers.data_adapters.data_adapter_utils", "unpack_x_y_sample_weight"
)
# Masks travel on tensors as an attribute Keras sets and reads.
get_keras_mask = _private("keras.src.backend.common.masking", "get_keras_mask")
set_keras_mask = _private("keras.src.backend.common.masking", "set_keras_mask")
# Losses: what compile() wraps a function in, and the reductions Keras applies.
LossFunctionWrapper = _private("keras.src.losses.losses", "LossFunctionWrapper")
scale_loss_for_distribution = _private("keras.src.losses.loss", "scale_loss_for_distribution")
reduce_weighted_values = _private("keras.src.losses.loss", "reduce_weighted_values")


def loss_tracker(model):
    """The metric ``fit`` reports as ``loss`` (``Trainer._loss_tracker``)."""
    tracker = getattr(model, "_loss_tracker", None)
    if tracker is None:
        raise AttributeError(
            "this Keras model has no `_loss_tracker` (compile it first; if "
            "it is compiled, Keras renamed it: see ctc_newton/_keras_adapter.py)"
        )
    return tracker


def flatten_layers(model):
    """Every layer inside ``model``, nested ones included (``Layer._flatten_layers``)."""
    return list(model._flatten_layers())


def seed_generators(model):
    """The ``keras.random.SeedGenerator``s of every layer in ``model`` (dropout's;
    ``Layer._seed_generators``). Their states are non-trainable variables."""
    return [
        generator
        for layer in flatten_layers(model)
        for generator in getattr(layer, "_seed_generators", ())
    ]
