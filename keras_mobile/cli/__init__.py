"""Command-line entry points (absl flags); each module defines its own flags, so
import one per process (the scripts in scripts/ and the console commands do)."""

from __future__ import annotations

import os
import signal
import sys

from absl import app, flags


def fail(message: str):
    """Prints ``<program>: error: <message>`` on one line of stderr and exits with 1."""
    print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, but logging at WARNING unless ``--verbosity``/``-v`` is
    given: absl's ``app.run`` raises an unset verbosity to INFO, which prints
    tensorflow-datasets' INFO lines every epoch. ``--verbosity=0`` shows them."""
    args = app.parse_flags_with_usage(argv)
    if flags.FLAGS["verbosity"].using_default_value:
        flags.FLAGS.verbosity = -1  # WARNING; now set, so app.run leaves it
    return args


def run_main(main) -> None:
    """``app.run(main)`` with ``parse_flags``: how every CLI here starts. SIGTERM
    (``kill``, a cluster's preemption) exits through Python, so every file being
    written atomically is cleaned up instead of left behind."""
    signal.signal(signal.SIGTERM, _terminate)
    app.run(main, flags_parser=parse_flags)


def _terminate(signum, frame):  # noqa: ARG001
    raise SystemExit(128 + signum)
