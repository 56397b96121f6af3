"""keras_mobile's own weight files: HDF5 keyed by variable path, written atomically.

Keras 3's ``.weights.h5`` keys weights by creation order, so two same-shape
layers swapped in code load silently swapped. Here every dataset is named by
the variable's path (``block3a_expand_conv/kernel``), and loading checks that
the file and the model hold exactly the same paths and shapes.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from keras_mobile.files import atomic_path

FORMAT = "keras_mobile.weights/1"


def save_weights(model, path) -> str:
    """Write every variable of ``model`` to ``path`` (HDF5), atomically.

    The file is written next to ``path`` under a temporary name and renamed
    into place, so an interrupted save never leaves a truncated file where a
    good one was.

    Returns:
        ``path`` as a string.
    """
    path = os.fspath(path)
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["model_name"] = model.name
        for variable in model.weights:
            f.create_dataset(variable.path, data=np.asarray(variable.numpy()))
    return path


def is_keras_mobile_file(path) -> bool:
    """True if ``path`` is an HDF5 file written by :func:`save_weights`."""
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except OSError:
        return False


def _read(path) -> dict[str, np.ndarray]:
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return arrays


def load_weights(model, path):
    """Load a :func:`save_weights` file into ``model``, matching by variable path.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a keras_mobile weights file, or does not fit
            the model; the message names the first mismatching layer. Nothing
            is assigned unless everything fits.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found. Received: path={path!r}.")
    if not is_keras_mobile_file(path):
        raise ValueError(f"{path!r} is not a keras_mobile weights file "
                         "(written by keras_mobile.weights.save_weights).")
    arrays = _read(path)
    for variable in model.weights:
        layer = variable.path.split("/")[0]
        if variable.path not in arrays:
            raise ValueError(
                f"Weights file {path!r} does not fit model {model.name!r}: first mismatching "
                f"layer {layer!r}: the file has no {variable.path!r}. Was it saved from "
                "another architecture?")
        if arrays[variable.path].shape != tuple(variable.shape):
            raise ValueError(
                f"Weights file {path!r} does not fit model {model.name!r}: first mismatching "
                f"layer {layer!r}: {variable.path!r} has shape {arrays[variable.path].shape} in "
                f"the file and {tuple(variable.shape)} in the model.")
    extra = sorted(set(arrays) - {v.path for v in model.weights})
    if extra:
        raise ValueError(
            f"Weights file {path!r} does not fit model {model.name!r}: it has "
            f"{len(extra)} variable(s) the model lacks, first {extra[0]!r}.")
    for variable in model.weights:
        variable.assign(arrays[variable.path])
    return model
