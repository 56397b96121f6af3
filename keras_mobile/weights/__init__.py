"""Weights: keras_mobile's name-keyed files, official PyTorch checkpoints, ImageNet."""

from __future__ import annotations

import os

from keras_mobile.weights.io import is_keras_mobile_file, load_weights, save_weights
from keras_mobile.weights.official import (
    load_official_checkpoint,
    load_official_state_dict,
    official_mapping,
)

__all__ = ["load_into", "load_official_checkpoint", "load_official_state_dict", "load_weights",
           "official_mapping", "save_weights"]

_TORCH_SUFFIXES = (".pth", ".pth.tar", ".pt")


def load_into(model, weights, *, family: str, variant: dict):
    """What a builder does with ``weights``: "imagenet", an official PyTorch
    checkpoint (``.pth``/``.pth.tar``), a keras_mobile weights file, or a Keras
    ``.weights.h5`` file."""
    if weights == "imagenet":
        from keras_mobile.weights.imagenet import load_imagenet  # noqa: PLC0415

        return load_imagenet(model, family, variant)
    path = os.fspath(weights)
    if path.endswith(_TORCH_SUFFIXES):
        return load_official_checkpoint(model, path)
    if is_keras_mobile_file(path):
        return load_weights(model, path)
    model.load_weights(path)
    return model
