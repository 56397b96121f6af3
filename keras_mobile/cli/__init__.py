"""Command-line entry points (absl flags); each module defines its own flags, so
import one per process (the scripts in scripts/ and the console commands do)."""

from __future__ import annotations

import os
import sys


def fail(message: str):
    """Prints ``<program>: error: <message>`` on one line of stderr and exits with 1."""
    print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
    raise SystemExit(1)
