"""keras_mobile's own weight files: HDF5 keyed by variable path, written atomically.

Keras 3's ``.weights.h5`` keys weights by creation order, so two same-shape
layers swapped in code load silently swapped. Here every dataset is named by
the variable's path (``block3a_expand_conv/kernel``), and loading checks that
the file and the model hold exactly the same paths and shapes.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile

import h5py
import numpy as np

from keras_mobile.files import atomic_path

FORMAT = "keras_mobile.weights/1"
_KERAS_ZIP = ".keras"  # a Keras archive (ZIP)
TORCH_SUFFIXES = (".pth", ".pth.tar", ".pt")  # PyTorch checkpoints; every other file is HDF5


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


def check_weights_file(path) -> str:
    """The one check that ``path`` can be opened as a weights file (HDF5: Keras
    ``.weights.h5``/``.h5`` or keras_mobile's; a ZIP for ``.keras``), cheap enough to
    run before any long work. PyTorch checkpoints (``TORCH_SUFFIXES``) are only
    checked to exist: reading one (``keras_mobile.weights.pth``) checks the rest.
    Returns ``path`` as a string.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a directory, or a file that is not a readable weights file
            (truncated, corrupt, another format); the message names the file.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"weights file {path!r} is a directory.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist.")
    if path.endswith(TORCH_SUFFIXES):
        return path
    if path.endswith(_KERAS_ZIP):
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path} is not a readable Keras weights file (not a ZIP archive).")
        return path
    try:
        with h5py.File(path, "r"):
            pass
    except OSError as error:
        raise ValueError(f"{path} is not a readable Keras weights file "
                         f"({_reason(error)}).") from None
    return path


def load_weights_file(model, path):
    """Load a weights file into ``model``: keras_mobile's (matched by variable path,
    :func:`load_weights`) or Keras's (``model.load_weights``). Every failure is a
    one-line error naming the file: Keras's warnings while trying are held back
    (re-issued only when the load succeeds) and its error (a list of every layer
    that did not load, with tensor values) is cut to the first mismatching layer.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a readable weights file, or weights that do not fit the model.
    """
    path = check_weights_file(path)
    if is_keras_mobile_file(path):
        return load_weights(model, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except OSError as error:  # the file broke after its header (h5py)
            raise ValueError(f"{path} is not a readable Keras weights file "
                             f"({_reason(error)}).") from None
        except ValueError as error:
            raise ValueError(_keras_mismatch(model, path, error)) from None
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)
    return model


def _reason(error: OSError) -> str:
    """h5py's reason: "Unable to synchronously open file (truncated file: ...)" -> the
    part in parentheses."""
    text = " ".join(str(error).split())
    match = re.search(r"\((.*)\)\s*$", text)
    return _clip(match.group(1) if match else text or type(error).__name__)


# Keras 3's error when objects of the file do not fit the model (saving_lib): a count,
# one example (with the variable's values) and the list of every object.
_KERAS_FAILED = re.compile(r"A total of (\d+) objects could not be loaded\. Example error "
                           r"message for object <\w+ name=([^,>]+)[^>]*>:\s*(.*)", re.S)
_KERAS_SHAPES = re.compile(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))"
                           r"(?:\. Target variable: <Variable path=([^,]+))?")


def _keras_mismatch(model, path, error: ValueError) -> str:
    text = str(error)
    failed = _KERAS_FAILED.match(text)
    if failed is None:
        return f"Cannot load weights file {path!r} into model {model.name!r}: " \
               f"{_clip(text.strip().splitlines()[0] if text.strip() else repr(error))}"
    count, layer, example = failed.groups()
    shapes = _KERAS_SHAPES.search(example)
    if shapes is not None:
        model_shape, file_shape, variable = shapes.groups()
        detail = (f"{variable.strip()!r} has shape {file_shape} in the file and {model_shape} "
                  "in the model" if variable else
                  f"shape {file_shape} in the file and {model_shape} in the model")
    else:
        detail = _clip(example.strip().splitlines()[0] if example.strip() else "")
    return (f"Weights file {path!r} does not fit model {model.name!r}: first mismatching "
            f"layer {layer!r}: {detail} ({count} layer(s) could not be loaded). Was it saved "
            "from another architecture?")


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."
