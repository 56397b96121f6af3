"""Atomic file writes: the one place every writer in the package goes through.

Readers see the old file or the new one, never a partial write: data goes to a
temporary file in the destination's folder, is flushed to disk, takes the old
file's permissions, and is renamed over the destination only on success.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yields a temporary path beside ``path``; on a clean exit it replaces
    ``path``, on any exception it is deleted and ``path`` is left as it was."""
    path = check_output_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale(path)
    prefix = f".{os.path.basename(path)}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def check_output_path(path, name: str = "path", suffix: str = "") -> str:
    """The one check of a file about to be written, cheap enough to run before any
    long work: ``path`` is not an existing directory, ends with ``suffix``, and its
    folder exists or can be created (its nearest existing ancestor is a writable
    directory). Raises ValueError naming ``name`` (a flag, e.g. ``--output``)."""
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{name} must name a file to write. Received: {name}={path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{name}={path} is an existing directory, not a file to write.")
    if suffix and not path.endswith(suffix):
        raise ValueError(f"{name} must end with {suffix}. Received: {name}={path}")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{name}={path} cannot be written: {parent} is a file, not a directory.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name}={path} cannot be written: no write permission in {parent}.")
    return path


def lock_file(path, *, wait: bool):
    """Opens ``path`` (created if missing) and takes an exclusive advisory lock
    (``flock``) on it. Returns the open file, which holds the lock until it is
    closed; the system releases it when the process ends, so a killed process never
    leaves it held (Linux maps flock to a POSIX lock on NFS). ``wait=False``: None
    at once when another process holds it. Without fcntl (Windows) nothing is locked."""
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115  (the caller closes it)
    if fcntl is None:
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.close()
        return None
    except BaseException:
        handle.close()
        raise
    return handle


def remove_stale(path) -> list[str]:
    """Deletes the temporary files of ``path`` left by writers that died (killed
    mid-write, so no cleanup ran); a live writer's are kept. Returns what was deleted."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    pattern = re.compile(rf"^\.{re.escape(name)}\.(\d+)\.")
    removed = []
    for entry in os.listdir(directory):
        match = pattern.match(entry)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(directory, entry))
                removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def atomic_write(path, data: str | bytes) -> str:
    """Writes ``data`` (text as UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            with open(tmp, "wb") as f:
                f.write(data)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(data)
    return os.fspath(path)
