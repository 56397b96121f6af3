"""What the detection and segmentation main jobs share after training: every export
mode to a ``.tflite`` file with its task metric measured in LiteRT, and the host
benchmark of the files as result rows (:mod:`keras_mobile.detection.report`,
:mod:`keras_mobile.segmentation.report`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

NUM_CALIBRATION_SAMPLES = 200  # as the classifiers' int8 exports


@dataclasses.dataclass
class TaskExport:
    mode: str  # keras_mobile.export's export mode
    path: str
    size_bytes: int
    metrics: dict  # the task's metrics in LiteRT on the evaluation split
    float_ops: int
    xnnpack_partitions: int
    parity: str  # the export's parity check, summarized
    latency_ms: float | None = None  # host benchmark median, 1 thread
    error: str | None = None  # the conversion or its parity check failed: nothing written


def export_files(model, model_dir: str, modes, *, prefix: str, labels, calibration, check,
                 evaluate: Callable[[str], dict], qat_model=None,
                 tolerance=None) -> list[TaskExport]:
    """``model`` to ``model_dir/<prefix>_<mode>.tflite`` for each export mode (and
    ``qat_model``, the fine-tuned quantization-aware twin, as ``qat_int8``) through
    :func:`keras_mobile.export.export` with ``labels`` as metadata, ``calibration``
    images for int8 and ``check`` images for its parity gate; then ``evaluate(path)``
    of every file. A conversion whose gate fails is reported with its error, nothing
    written for it."""
    from keras_mobile.export import export
    from keras_mobile.tflite import ConversionError

    jobs = [(mode, model) for mode in modes]
    if qat_model is not None:
        jobs.append(("qat_int8", qat_model))
    exports = []
    for mode, source in jobs:
        path = os.path.join(model_dir, f"{prefix}_{mode}.tflite")
        try:
            report = export(source, path, mode=mode, representative_data=calibration,
                            num_calibration_samples=len(calibration), check_data=check,
                            num_check_samples=len(check), metadata={"labels": list(labels)},
                            tolerance=tolerance)
        except ConversionError as error:
            exports.append(TaskExport(mode, path, 0, {}, -1, -1, "", error=str(error)))
            continue
        exports.append(TaskExport(mode, path, report.size_bytes, evaluate(path),
                                  report.float_ops, report.xnnpack_partitions,
                                  str(report.parity)))
    return exports


def benchmark(exports: list[TaskExport], name: str, macs: int | None, *, task: str,
              metric_prefix: str, num_runs: int = 50):
    """Host latency of every written export (one child process, interleaved, 1 thread),
    as :class:`keras_mobile.benchmark.BenchmarkResult` rows whose ``extra`` holds the
    task and its metrics (``<metric_prefix><name>``)."""
    from keras_mobile.benchmark import host

    written = [e for e in exports if e.error is None]
    results = host.run_many([e.path for e in written], num_threads=1, num_runs=num_runs,
                            rounds=5, models=[name] * len(written),
                            modes=[e.mode for e in written], macs=[macs] * len(written))
    rows = []
    for export, result in zip(written, results, strict=True):
        export.latency_ms = result.median_ms
        metrics = {f"{metric_prefix}{k}": v for k, v in export.metrics.items()
                   if not isinstance(v, (list, dict))}
        rows.append(dataclasses.replace(result, extra={**result.extra, "task": task,
                                                       **metrics}))
    return rows


def exports_section(exports: list[TaskExport], *, title: str, metric_header: str,
                    metric: Callable[[dict], str], parity_of: str) -> list[str]:
    """The report's table of export files (mode, size, the task metric in LiteRT,
    latency, partitions, float ops) and their parity lines; [] without exports."""
    if not exports:
        return []
    lines = [f"## {title}", "",
             f"| Mode | File | Size (KB) | {metric_header} | Latency (ms, median) | "
             "XNNPACK partitions | Float ops |",
             "|---|---|---|---|---|---|---|"]
    for e in exports:
        if e.error:
            lines.append(f"| {e.mode} | not written: {e.error[:200]} | | | | | |")
            continue
        latency = f"{e.latency_ms:.2f}" if e.latency_ms is not None else "not run"
        lines.append(f"| {e.mode} | {os.path.basename(e.path)} | {e.size_bytes / 1024:.0f} "
                     f"| {metric(e.metrics)} | {latency} | {e.xnnpack_partitions} | "
                     f"{e.float_ops} |")
    lines += ["", f"Parity with the Keras {parity_of} (the export's check):", ""]
    lines += [f"- {e.mode}: {e.parity}" for e in exports if not e.error]
    return lines + [""]


def write_files(model_dir: str, lines: list[str], exports: list[TaskExport]) -> str:
    """``model_dir/report.md`` (``lines``) and ``exports.json`` (the export table as
    data), both written atomically; returns the report path."""
    import json

    from keras_mobile.files import atomic_write

    atomic_write(os.path.join(model_dir, "exports.json"),
                 json.dumps([dataclasses.asdict(e) for e in exports], indent=1) + "\n")
    path = os.path.join(model_dir, "report.md")
    atomic_write(path, "\n".join(lines))
    return path
