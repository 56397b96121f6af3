"""Benchmarks: one result schema for host (LiteRT) and Android (adb) runs, and reports.

``run`` (the host runner in ``host.py``) is imported on first use. The modules here
import no TensorFlow themselves (the ``keras_mobile`` package around them does).
"""

from keras_mobile.benchmark.android import parse_benchmark_output, run_android
from keras_mobile.benchmark.report import write_report
from keras_mobile.benchmark.result import BenchmarkResult, read_results, write_results

__all__ = ["BenchmarkResult", "parse_benchmark_output", "read_results", "run", "run_android",
           "write_report", "write_results"]


def __getattr__(name):
    # The host runner: `from keras_mobile.benchmark.host import run`, loaded lazily.
    if name == "run":
        from keras_mobile.benchmark.host import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
