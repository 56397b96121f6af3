"""Benchmarks: one result schema for host (LiteRT) and Android (adb) runs, and reports.

``run`` and ``run_many`` (the host runners in ``host.py``) are imported on first use. The
modules here import no TensorFlow themselves (the ``keras_mobile`` package around them does).
"""

from keras_mobile.benchmark.android import parse_benchmark_output, run_android
from keras_mobile.benchmark.report import write_report
from keras_mobile.benchmark.result import BenchmarkResult, read_results, write_results

__all__ = ["BenchmarkResult", "parse_benchmark_output", "read_results", "run", "run_android",
           "run_many", "write_report", "write_results"]


def __getattr__(name):
    # The host runners (`keras_mobile.benchmark.host`), loaded lazily.
    if name in ("run", "run_many"):
        from keras_mobile.benchmark import host

        return getattr(host, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
