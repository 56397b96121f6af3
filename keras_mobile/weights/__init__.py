"""Weights: keras_mobile's name-keyed files, official PyTorch checkpoints, ImageNet."""

from __future__ import annotations

import os

from keras_mobile.weights.io import (
    TORCH_SUFFIXES,
    check_weights_file,
    is_keras_mobile_file,
    load_weights,
    load_weights_file,
    save_weights,
)
from keras_mobile.weights.official import (
    load_official_checkpoint,
    load_official_state_dict,
    official_mapping,
)

__all__ = ["check_weights_file", "is_keras_mobile_file", "load_into", "load_official_checkpoint",
           "load_official_state_dict", "load_weights", "load_weights_file", "official_mapping",
           "save_weights"]

def load_into(model, weights, *, family: str, variant: dict):
    """What a builder does with ``weights``: "imagenet", an official PyTorch
    checkpoint (``.pth``/``.pth.tar``), a keras_mobile weights file, or a Keras
    ``.weights.h5`` file."""
    if weights == "imagenet":
        from keras_mobile.weights.imagenet import load_imagenet  # noqa: PLC0415

        return load_imagenet(model, family, variant)
    path = os.fspath(weights)
    if path.endswith(TORCH_SUFFIXES):
        return load_official_checkpoint(model, path)
    return load_weights_file(model, path)
