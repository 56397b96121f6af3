"""One result schema for host (LiteRT interpreter) and Android (adb) benchmarks.

A :class:`BenchmarkResult` is one measured configuration: a graph, a target, a
delegate and a thread count. Times are milliseconds, sizes megabytes (10^6 bytes,
as ``benchmark_model`` prints them). :func:`write_results` stores a list of
results as ``results.json`` (the record) and ``results.csv`` (for spreadsheets).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import os

from keras_mobile.export import EXPORT_MODES
from keras_mobile.files import atomic_write

TARGETS = ("host", "android")
DELEGATES = ("xnnpack", "none", "gpu", "nnapi")
MODES = EXPORT_MODES  # keras_mobile.export's: float32 ... int8_percentile, qat_int8
SCHEMA_VERSION = 1

_INT_FIELDS = ("num_threads", "num_runs", "warmup_runs", "delegate_partitions", "macs")
_FLOAT_FIELDS = ("model_size_mb", "init_ms", "first_ms", "median_ms", "p90_ms", "min_ms",
                 "max_ms", "mean_ms", "std_ms", "peak_memory_mb", "cpu_wall_ratio", "top1")
_DICT_FIELDS = ("versions", "extra")


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """One benchmarked configuration; see the module docstring for units.

    ``median_ms``/``p90_ms`` are None when the tool does not print them (the
    LiteRT results block, old ``benchmark_model`` builds). ``extra`` holds
    anything else, including unknown keys read from newer or older files.
    """

    model: str | None
    mode: str | None
    graph: str
    target: str
    delegate: str
    num_threads: int
    device: str
    date: str
    versions: dict
    num_runs: int
    warmup_runs: int
    model_size_mb: float
    init_ms: float | None
    first_ms: float | None
    median_ms: float | None
    p90_ms: float | None
    min_ms: float
    max_ms: float
    mean_ms: float
    std_ms: float
    peak_memory_mb: float | None = None
    cpu_wall_ratio: float | None = None
    fully_delegated: bool | None = None
    delegate_partitions: int | None = None
    macs: int | None = None
    top1: float | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        _check_choice("target", self.target, TARGETS)
        _check_choice("delegate", self.delegate, DELEGATES)
        if self.mode is not None:
            _check_choice("mode", self.mode, MODES)
        for name in ("num_threads", "num_runs", "warmup_runs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int. Received: {name}={value!r}")
        for name in _DICT_FIELDS:
            if not isinstance(getattr(self, name), dict):
                raise TypeError(f"{name} must be a dict. Received: {name}={getattr(self, name)!r}")

    @property
    def latency_ms(self) -> float:
        """The headline latency: the median when the tool printed one, else the mean."""
        return self.median_ms if self.median_ms is not None else self.mean_ms

    def to_dict(self) -> dict:
        """A JSON-ready dict with one key per field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BenchmarkResult:
        """Builds a result from :meth:`to_dict` output; unknown keys go to ``extra``.

        Fields missing from ``data`` take their defaults; a missing field without a
        default raises ``ValueError`` naming it.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        extra = dict(kwargs.pop("extra", None) or {})
        extra.update({k: v for k, v in data.items() if k not in names})
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in kwargs]
        if missing:
            raise ValueError(f"A benchmark result needs the fields {missing}. "
                             f"Received keys: {sorted(data)}")
        return cls(**kwargs, extra=extra)

    @staticmethod
    def csv_header() -> list[str]:
        """Column names of :meth:`csv_row`, the field names in order."""
        return [f.name for f in dataclasses.fields(BenchmarkResult)]

    def csv_row(self) -> list:
        """The field values; dicts as JSON, None as an empty cell."""
        row = []
        for name in self.csv_header():
            value = getattr(self, name)
            if isinstance(value, dict):
                value = json.dumps(value, sort_keys=True)
            row.append("" if value is None else value)
        return row

    @classmethod
    def from_csv_row(cls, row: dict) -> BenchmarkResult:
        """Inverse of :meth:`csv_row` for a ``csv.DictReader`` row."""
        data = {}
        for key, text in row.items():
            if text is None or (text == "" and key not in ("graph", "device", "date")):
                data[key] = None if key not in _DICT_FIELDS else {}
            elif key in _DICT_FIELDS:
                data[key] = json.loads(text)
            elif key in _INT_FIELDS:
                data[key] = int(text)
            elif key in _FLOAT_FIELDS:
                data[key] = float(text)
            elif key == "fully_delegated":
                data[key] = text == "True"
            else:
                data[key] = text
        return cls.from_dict(data)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}. "
                         f"Received: {name}={value!r}")


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string, e.g. ``2025-11-21T10:00:00+00:00``."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _json_and_csv_paths(directory_or_path: str) -> tuple[str, str]:
    root, ext = os.path.splitext(directory_or_path)
    if ext.lower() in (".json", ".csv"):
        return root + ".json", root + ".csv"
    return (os.path.join(directory_or_path, "results.json"),
            os.path.join(directory_or_path, "results.csv"))


def write_results(results, directory_or_path: str) -> tuple[str, str]:
    """Writes ``results.json`` and ``results.csv`` atomically.

    Args:
        results: an iterable of :class:`BenchmarkResult`.
        directory_or_path: a folder (created if needed), or a ``.json``/``.csv``
            path whose stem names both files.

    Returns:
        ``(json_path, csv_path)``.

    Example:
        >>> write_results([result], "results/pixel7")  # doctest: +SKIP
        ('results/pixel7/results.json', 'results/pixel7/results.csv')
    """
    results = list(results)
    for r in results:
        if not isinstance(r, BenchmarkResult):
            raise TypeError(f"results must hold BenchmarkResult objects. Received: {r!r}")
    json_path, csv_path = _json_and_csv_paths(directory_or_path)
    record = {"schema_version": SCHEMA_VERSION, "results": [r.to_dict() for r in results]}
    atomic_write(json_path, json.dumps(record, indent=2, sort_keys=False) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(BenchmarkResult.csv_header())
    writer.writerows(r.csv_row() for r in results)
    atomic_write(csv_path, buffer.getvalue())
    return json_path, csv_path


def read_results(path: str) -> list[BenchmarkResult]:
    """Reads results written by :func:`write_results` (a folder, ``.json`` or ``.csv``)."""
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    if path.lower().endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            return [BenchmarkResult.from_csv_row(row) for row in csv.DictReader(f)]
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    rows = record["results"] if isinstance(record, dict) else record
    return [BenchmarkResult.from_dict(row) for row in rows]
