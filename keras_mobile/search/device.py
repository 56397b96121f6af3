"""Where latency is measured: this host (LiteRT + XNNPACK), a phone over adb, or a
user's own timing function; and the measurements, stored as they complete."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence

MODES = ("float32", "int8")
DEFAULT_CACHE = os.path.join("~", ".cache", "keras_mobile", "latency")


def _runtime_version() -> str:
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return "unknown"


class Device:
    """A target to measure latency on.

    Args:
        target: ``"host"`` (LiteRT + XNNPACK here, in a child process), ``"adb:SERIAL"``
            (``benchmark_model`` on a phone, keras_mobile.benchmark.run_android), or any
            name together with ``measure``.
        threads: CPU threads of the runtime.
        mode: ``"float32"`` or ``"int8"``: how the graphs are converted.
        num_runs, warmup_runs, rounds: timed and untimed invokes per graph; ``rounds``
            interleaved passes over a batch of graphs (host).
        measure: a callable ``[path.tflite, ...] -> [ms, ...]`` that times graphs on a
            device keras_mobile does not drive itself (a device farm, a stand-in).
        version: the runtime version in the cache key (default: ai-edge-litert's).
    """

    def __init__(self, target: str = "host", *, threads: int = 1, mode: str = "float32",
                 num_runs: int = 30, warmup_runs: int = 5, rounds: int = 3,
                 measure: Callable[[Sequence[str]], Sequence[float]] | None = None,
                 version: str | None = None):
        if not isinstance(target, str) or not target:
            raise ValueError(f'target must be "host", "adb:SERIAL" or a name with measure=. '
                             f"Received: target={target!r}")
        if measure is None and target != "host" and not target.startswith("adb:"):
            raise ValueError(f'target must be "host" or "adb:SERIAL" (or pass measure= to time '
                             f"graphs yourself). Received: target={target!r}")
        if target.startswith("adb:") and not target[4:]:
            raise ValueError(f'adb targets name a serial: "adb:SERIAL" (see `adb devices`). '
                             f"Received: target={target!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
        for name, value, low in (("threads", threads, 1), ("num_runs", num_runs, 1),
                                 ("warmup_runs", warmup_runs, 0), ("rounds", rounds, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}. Received: {name}={value!r}")
        if measure is not None and not callable(measure):
            raise TypeError(f"measure must be callable. Received: {measure!r}")
        self.target, self.threads, self.mode = target, threads, mode
        self.num_runs, self.warmup_runs, self.rounds = num_runs, warmup_runs, min(rounds,
                                                                                  num_runs)
        self._measure = measure
        self.version = version or _runtime_version()

    def __repr__(self) -> str:
        return f"Device({self.target!r}, threads={self.threads}, mode={self.mode!r})"

    @property
    def key(self) -> str:
        """Device, machine, threads, mode and runtime version: what a latency table holds."""
        where = self.target
        if self.target == "host":
            from keras_mobile.benchmark.host import machine  # noqa: PLC0415

            where = f"host-{machine()}"
        text = f"{where}-t{self.threads}-{self.mode}-litert{self.version}"
        return re.sub(r"[^A-Za-z0-9.+-]+", "_", text)

    def check(self) -> None:
        """Fails (ValueError, one line) unless the device can be reached now."""
        if not self.target.startswith("adb:"):
            return
        import subprocess  # noqa: PLC0415

        from keras_mobile.benchmark import android  # noqa: PLC0415

        serial = self.target[4:]
        try:
            adb = android._find_adb("adb")
            out = subprocess.run([adb, "devices"], capture_output=True, text=True, timeout=30)
        except Exception as error:  # no adb binary, adb server failure, timeout
            raise ValueError(f"device {self.target!r} is not reachable: "
                             f"{type(error).__name__}: {error}") from None
        online = [line.split()[0] for line in out.stdout.splitlines()[1:]
                  if line.strip().endswith("device")]
        if serial not in online:
            raise ValueError(f"device {self.target!r} is not reachable: adb lists "
                             f"{online or 'no device'} online.")

    def measure(self, graphs: Sequence[str]) -> list[float]:
        """Median ms of each .tflite file (one interleaved child process on the host)."""
        graphs = [os.fspath(g) for g in graphs]
        if not graphs:
            return []
        if self._measure is not None:
            values = [float(v) for v in self._measure(graphs)]
            if len(values) != len(graphs):
                raise ValueError(f"measure returned {len(values)} values for "
                                 f"{len(graphs)} graphs.")
            return values
        if self.target == "host":
            from keras_mobile.benchmark.host import run_many  # noqa: PLC0415

            results = run_many(graphs, num_threads=self.threads, num_runs=self.num_runs,
                               warmup_runs=self.warmup_runs, rounds=self.rounds)
            return [r.median_ms for r in results]
        from keras_mobile.benchmark.android import run_android  # noqa: PLC0415

        return [run_android(g, serial=self.target[4:], num_threads=self.threads,
                            num_runs=self.num_runs, warmup_runs=self.warmup_runs).median_ms
                for g in graphs]


def convert(model, path: str, mode: str) -> None:
    """``model`` as a .tflite file in ``mode`` (int8: calibrated on random images; the
    latency does not depend on the ranges). No parity check: only timed."""
    import numpy as np  # noqa: PLC0415

    from keras_mobile.tflite import convert as tflite_convert  # noqa: PLC0415

    shape = tuple(model.inputs[0].shape[1:])
    images = np.random.default_rng(0).uniform(0, 255, (8, *shape)).astype("float32")
    tflite_convert(model, path, mode=mode, representative_data=images if mode == "int8" else None,
                   num_calibration_samples=8, check=False)


def time_archs(device: Device, archs, graph_dir: str | None = None):
    """Build, convert (in ``device.mode``) and time ``archs`` on ``device``; returns
    ``(ms, file bytes)`` per arch. Graphs already in ``graph_dir`` are reused, new ones
    kept there; without it they live in a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = graph_dir or tmp
        os.makedirs(folder, exist_ok=True)
        graphs = [os.path.join(folder, f"{arch.key}.tflite") for arch in archs]
        for arch, graph in zip(archs, graphs, strict=True):
            if not os.path.exists(graph):  # convert() writes atomically
                convert(arch.build(classes=10), graph, device.mode)
        return device.measure(graphs), [os.path.getsize(g) for g in graphs]


class Measurements:
    """The latency table of one device: ``{cache_dir}/{device.key}.jsonl``, one JSON line
    per measured arch, appended (and flushed) as each batch completes, so a killed
    calibration restarts where it stopped. A torn last line is ignored."""

    def __init__(self, device: Device, cache_dir: str | None = None,
                 graph_dir: str | None = None):
        self.device = device
        # Converted graphs kept here (by mode and arch) are reused by any device of that mode.
        self.graph_dir = None if graph_dir is None else os.path.join(
            os.path.expanduser(graph_dir), device.mode)
        self.directory = os.path.expanduser(cache_dir or DEFAULT_CACHE)
        self.path = os.path.join(self.directory, f"{device.key}.jsonl")
        self.entries: dict[str, dict] = {}
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    self.entries[entry["key"]] = entry

    def __contains__(self, arch) -> bool:
        return arch.key in self.entries

    def ms(self, arch) -> float:
        return self.entries[arch.key]["ms"]

    def measure(self, archs, *, batch: int = 8, progress=None) -> list[float]:
        """Measured ms of every arch: cached ones read, the others built, converted and
        timed in batches (each batch appended to the table when it completes)."""
        from keras_mobile.benchmark.result import utc_now  # noqa: PLC0415

        todo, seen = [], set()
        for arch in archs:
            if arch.key not in self.entries and arch.key not in seen:
                todo.append(arch)
                seen.add(arch.key)
        if todo:
            self.device.check()
            os.makedirs(self.directory, exist_ok=True)
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            times, sizes = time_archs(self.device, chunk, self.graph_dir)
            lines = []
            for arch, ms, size in zip(chunk, times, sizes, strict=True):
                entry = {"key": arch.key, "arch": arch.to_dict(), "ms": ms, "bytes": size,
                         "date": utc_now()}
                self.entries[arch.key] = entry
                lines.append(json.dumps(entry) + "\n")
            with open(self.path, "a", encoding="utf-8") as f:
                f.writelines(lines)
                f.flush()
                os.fsync(f.fileno())
            if progress:
                progress(f"measured {min(start + batch, len(todo))}/{len(todo)} on "
                         f"{self.device!r}")
        return [self.ms(arch) for arch in archs]
