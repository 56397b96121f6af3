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

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, runs are not serialized
    fcntl = None

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

    An advisory ``flock`` on ``model_dir/.lock``: the system releases it when the
    process ends, so a crashed or killed run never leaves it stuck. Re-entrant
    within a process (training, then export, in one CLI run). Multi-worker runs
    share their ``model_dir`` by design: only the chief locks it.
    """
    key = os.path.realpath(model_dir)
    if key in _HELD or fcntl is None:
        _HELD[key] = _HELD.get(key, 0) + 1
        try:
            yield
        finally:
            _release(key, None)
        return
    check_model_dir_path(model_dir)
    created = not os.path.exists(model_dir)
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ModelDirBusy(f"model_dir {model_dir} is in use by {owner}: one run at a time "
                           "owns a model_dir. Wait for it to finish, or pass another "
                           "--model_dir.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()}\n".encode(), 0)
    _HELD[key] = 1
    try:
        yield
    finally:
        # A run that failed before writing anything leaves no folder behind.
        if created and os.listdir(model_dir) == [LOCK_NAME]:
            os.remove(path)
            os.rmdir(model_dir)
        _release(key, fd)


def _release(key: str, fd: int | None) -> None:
    _HELD[key] -= 1
    if _HELD[key] == 0:
        del _HELD[key]
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock


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
