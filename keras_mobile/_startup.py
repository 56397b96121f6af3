"""Loads TensorFlow with its INFO lines off, as keras_mobile's CLIs promise
("warnings and errors only"): ``TF_CPP_MIN_LOG_LEVEL`` defaults to 1 (hide INFO)
unless set, and the INFO lines that TensorFlow's C++ code prints while it loads,
before it reads that variable (oneDNN, CUDA, CPU features), are dropped.
``TF_CPP_MIN_LOG_LEVEL=0`` shows everything. Imports no TensorFlow itself."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

# A C++ INFO line (absl/glog layout; LiteRT's "INFO: "), and absl's note printed before its
# log is initialized.
_INFO = re.compile(rb"^(I\d{4} [\d:.]+ +\d+ \S+:\d+\] |INFO: |"
                   rb"WARNING: All log messages before absl::InitializeLog\(\) is called)")
_RECORD = re.compile(rb"^[IWEF]\d{4} |^(INFO|WARNING|ERROR): ")


def import_tensorflow() -> None:
    """``import tensorflow``, quietly unless ``TF_CPP_MIN_LOG_LEVEL`` is 0."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if "tensorflow" in sys.modules or not quiet():
        import tensorflow  # noqa: F401, PLC0415
        return
    with without_info_lines():
        import tensorflow  # noqa: F401, PLC0415


def quiet() -> bool:
    """Whether native INFO lines are to be dropped (``TF_CPP_MIN_LOG_LEVEL`` >= 1)."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1") not in ("", "0")


@contextlib.contextmanager
def without_info_lines():
    """Everything written to file descriptor 2 inside, less the INFO lines (and the
    lines continuing them), is written to it afterwards."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no real stderr (embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            dropping = False
            for line in captured.read().splitlines(keepends=True):
                if _RECORD.match(line):
                    dropping = bool(_INFO.match(line))
                if not dropping:
                    os.write(2, line)
