"""What keeps a ``model_dir`` truthful: one run owns it at a time, a checkpoint or
weights file is written only when every value in it is finite, and resuming
takes the newest checkpoint that really reads back.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings

import numpy as np
import tensorflow as tf

from keras_mobile import files

LOCK_NAME = ".lock"
_HELD: dict[str, int] = {}  # model_dir -> depth, for the locks this process holds
_CHECKPOINT = re.compile(r"^ckpt-(\d+)\.index$")


class ModelDirBusy(ValueError):
    """Another process is training or exporting into the same ``model_dir``."""


def check_model_dir_path(model_dir: str) -> None:
    """A ``model_dir`` must be a folder or not exist yet."""
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise ValueError(f"model_dir must be a folder. Received: model_dir={model_dir!r}, "
                         "an existing file.")


@contextlib.contextmanager
def lock(model_dir: str):
    """Owns ``model_dir`` for the block, or raises :class:`ModelDirBusy` at once.

    :func:`keras_mobile.files.lock_file` on ``model_dir/.lock``, which names its
    owner: a crashed or killed run never leaves it stuck. Re-entrant within a
    process (training, then export, in one CLI run). Multi-worker runs share their
    ``model_dir`` by design: only the chief locks it.
    """
    key = os.path.realpath(model_dir)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    check_model_dir_path(model_dir)
    created = not os.path.exists(model_dir)
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, LOCK_NAME)
    handle = files.lock_file(path, wait=False)
    if handle is None:
        with open(path, encoding="utf-8", errors="replace") as f:
            owner = f.read(200).strip() or "another process"
        raise ModelDirBusy(f"model_dir {model_dir} is in use by {owner}: one run at a time "
                           "owns a model_dir. Wait for it to finish, or pass another "
                           "--model_dir.")
    with handle:  # closing it releases the lock
        handle.truncate(0)
        handle.write(f"process {os.getpid()}\n")
        handle.flush()
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            # A run that failed before writing anything leaves no folder behind.
            if created and os.listdir(model_dir) == [LOCK_NAME]:
                os.remove(path)
                os.rmdir(model_dir)


def remove(manager: tf.train.CheckpointManager, prefix: str) -> None:
    """Deletes the checkpoint ``prefix`` of ``manager`` and takes it out of the
    ``checkpoint`` index file (the newest remaining one becomes the latest)."""
    for path in tf.io.gfile.glob(prefix + ".*"):
        tf.io.gfile.remove(path)
    kept = [p for p in manager.checkpoints if p != prefix]
    index = os.path.join(manager.directory, "checkpoint")
    if kept:
        tf.compat.v1.train.update_checkpoint_state(manager.directory, kept[-1],
                                                   all_model_checkpoint_paths=kept)
    elif tf.io.gfile.exists(index):
        tf.io.gfile.remove(index)


def all_finite(variables) -> bool:
    """True when every value of ``variables`` (Keras or tf variables, arrays) is finite."""
    for v in variables:
        value = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return False
    return True


def candidates(directory: str, newest: str | None) -> list[str]:
    """Checkpoint prefixes in ``directory``, newest first: ``newest`` (from the
    ``checkpoint`` index file) then every ``ckpt-N`` found on disk, so a lost
    index file does not hide them."""
    found = []
    if os.path.isdir(directory):
        steps = sorted((int(m.group(1)) for m in map(_CHECKPOINT.match, os.listdir(directory))
                        if m), reverse=True)
        found = [os.path.join(directory, f"ckpt-{step}") for step in steps]
    if newest:
        found = [newest] + [p for p in found if os.path.abspath(p) != os.path.abspath(newest)]
    return found


def restore_newest(checkpoint, directory: str, newest: str | None) -> str | None:
    """Restores the newest checkpoint that reads back completely; returns its path.

    A checkpoint that does not read (truncated, corrupt, half-written) is skipped
    with a warning that names it; None when there is no checkpoint at all.
    Raises ValueError when checkpoints exist but none reads.
    """
    paths = candidates(directory, newest)
    bad = []
    for path in paths:
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
        except Exception as error:  # noqa: BLE001  (TF raises several unrelated types)
            bad.append(path)
            warnings.warn(f"checkpoint {path} does not read back ({type(error).__name__}: "
                          f"{str(error).splitlines()[0][:200]}); trying the previous one.",
                          stacklevel=2)
            continue
        if newest is None or os.path.abspath(path) != os.path.abspath(newest):
            warnings.warn(f"resuming from {path}: the checkpoint index file named "
                          f"{newest or 'no checkpoint'}.", stacklevel=2)
        return path
    if bad:
        raise ValueError(f"no checkpoint in {directory} reads back ({', '.join(bad)}). Move them "
                         "away to train from scratch, or pass another --model_dir.")
    return None
