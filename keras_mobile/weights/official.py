"""Load the authors' PyTorch weights (EMO, MobileNeXt) into keras_mobile models.

Each family with official weights exposes ``official_module(layer)``: the
PyTorch module path that holds the layer's weights (or None). From it and the
layer type the mapping and layout conversion follow, so no key list is typed by
hand.
"""

from __future__ import annotations

import importlib

import numpy as np

from keras_mobile.weights import pth

# Keras variable name -> PyTorch parameter/buffer name.
_TORCH_NAMES = {"kernel": "weight", "bias": "bias",
                "gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                "moving_variance": "running_var"}


_FAMILIES = {"EMO": "keras_mobile.models.emo", "MobileNeXt": "keras_mobile.models.mobilenext"}


def _official_module(family: str):
    return importlib.import_module(_FAMILIES[family]).official_module


def _to_keras(layer, variable_name: str, array: np.ndarray) -> np.ndarray:
    """PyTorch layout -> Keras layout: OIHW -> HWIO, (C, 1, k, k) -> (k, k, C, 1),
    (out, in) -> (in, out)."""
    kind = layer.__class__.__name__
    if variable_name == "kernel" and kind == "DepthwiseConv2D":
        return array.transpose(2, 3, 0, 1)
    if variable_name == "kernel" and kind == "Conv2D":
        return array.transpose(2, 3, 1, 0)
    if variable_name == "kernel" and kind == "Dense":
        return array.T
    return array


def official_mapping(model, family: str | None = None):
    """``[(torch_key, layer, variable)]`` for every weight of ``model`` in layer order.

    ``family`` ("EMO" or "MobileNeXt") is the one whose official layout covers
    every weight of ``model`` when None.

    Raises:
        ValueError: no family's official layout covers the model.
    """
    if family is not None and family not in _FAMILIES:
        raise ValueError(f"family must be one of {sorted(_FAMILIES)}. Received: family={family!r}.")
    for name in [family] if family else list(_FAMILIES):
        module_of = _official_module(name)
        mapping = [(f"{module_of(layer)}.{_TORCH_NAMES[variable.name]}", layer, variable)
                   for layer in model.layers if layer.weights and module_of(layer)
                   for variable in layer.weights]
        if len(mapping) == len(model.weights):
            return mapping
    raise ValueError(f"Model {model.name!r} has no official PyTorch layout: only EMO "
                     f"and MobileNeXt models{f' ({family})' if family else ''} load official "
                     "state dicts.")


def load_official_state_dict(model, state_dict: dict, family: str | None = None):
    """Fill ``model`` from an official PyTorch state dict (numpy arrays, PyTorch layouts).

    Args:
        model: a keras_mobile EMO or MobileNeXt model of the matching variant.
        state_dict: official key -> array; ``num_batches_tracked`` entries are ignored.
        family: "EMO" or "MobileNeXt" (inferred when None).

    Raises:
        ValueError: on a missing, unexpected or mis-shaped key (named), before
            any variable is changed.
    """
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict of arrays. Received: {type(state_dict)!r}.")
    given = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    mapping = official_mapping(model, family)
    expected = [key for key, _, _ in mapping]
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in set(expected)]
    if missing or unexpected:
        raise ValueError(
            f"The state dict does not fit model {model.name!r}: "
            f"{len(missing)} missing key(s) {missing[:5]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:5]}. "
            "Is it the checkpoint of another variant?")
    values = []
    for key, layer, variable in mapping:
        value = _to_keras(layer, variable.name, np.asarray(given[key], dtype="float32"))
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"Shape mismatch at {key!r} -> layer {layer.name!r} ({variable.path}): "
                f"checkpoint {tuple(np.shape(given[key]))} gives {tuple(value.shape)}, "
                f"the model has {tuple(variable.shape)}. Is it the checkpoint of another "
                "variant?")
        values.append(value)
    for (_, _, variable), value in zip(mapping, values, strict=True):
        variable.assign(value)
    return model


def load_official_checkpoint(model, path, family: str | None = None):
    """Read an official ``.pth`` / ``.pth.tar`` without torch (only tensors and
    plain containers are unpickled) and load it with :func:`load_official_state_dict`."""
    return load_official_state_dict(model, pth.load_state_dict(path), family)
