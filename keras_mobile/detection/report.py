"""After training a detector: TFLite exports (MediaPipe ObjectDetector files), COCO AP
of each in LiteRT, host benchmark, a picture of predicted boxes, and the report.

What ``python scripts/train.py --task=detection`` runs after training; the pieces
are usable alone (:func:`export_detectors`, :func:`benchmark`, :func:`draw_detections`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os

import numpy as np

from keras_mobile.files import atomic_path, atomic_write

NUM_CALIBRATION_SAMPLES = 200  # as the classifiers' int8 exports


@dataclasses.dataclass
class DetectionExport:
    mode: str  # keras_mobile.export's export mode
    path: str
    size_bytes: int
    metrics: dict  # COCO metrics in LiteRT on the evaluation split (AP, AP50, ...)
    float_ops: int
    xnnpack_partitions: int
    parity: str  # the detection parity check's summary
    latency_ms: float | None = None  # host benchmark median, 1 thread
    error: str | None = None  # the conversion or its parity check failed: nothing written


def evaluation_images(info, split: str, image_size: int, count: int) -> np.ndarray:
    """The images of :func:`keras_mobile.detection.training.evaluation_examples`."""
    from keras_mobile.detection.training import evaluation_examples

    return evaluation_examples(info, split, image_size, count)[0]


def export_detectors(model, model_dir: str, modes, *, info, eval_split: str,
                     calibration_split: str, qat_model=None,
                     num_calibration_samples: int = NUM_CALIBRATION_SAMPLES,
                     max_examples: int | None = None,
                     tolerance=None) -> list[DetectionExport]:
    """Exports the float detector ``model`` to ``model_dir/detector_<mode>.tflite`` for each
    export mode (NMS form, MediaPipe metadata with the dataset's class names; int8 takes
    uint8 input), and ``qat_model`` (its :func:`~keras_mobile.detection.quantize_detector`
    twin, fine-tuned) as ``qat_int8``; then COCO AP of every file in LiteRT on
    ``eval_split`` (its first ``max_examples``). A conversion whose parity check fails
    is reported with its error, and nothing is written for it (``tolerance``: the gate,
    default the mode's :data:`~keras_mobile.detection.export.TOLERANCES`)."""
    from keras_mobile.detection import evaluation
    from keras_mobile.export import export
    from keras_mobile.tflite import ConversionError

    size = model.image_size[0]
    labels = list(info.class_names)
    calibration = evaluation_images(info, calibration_split, size, num_calibration_samples)
    check = evaluation_images(info, eval_split, size, 16)
    jobs = [(mode, model) for mode in modes]
    if qat_model is not None:
        jobs.append(("qat_int8", qat_model))
    split = f"{eval_split}[:{max_examples}]" if max_examples and "[" not in eval_split \
        else eval_split
    exports = []
    for mode, source in jobs:
        path = os.path.join(model_dir, f"detector_{mode}.tflite")
        try:
            report = export(source, path, mode=mode, representative_data=calibration,
                            num_calibration_samples=len(calibration), check_data=check,
                            num_check_samples=len(check), metadata={"labels": labels},
                            tolerance=tolerance)
        except ConversionError as error:
            exports.append(DetectionExport(mode, path, 0, {}, -1, -1, "", error=str(error)))
            continue
        metrics = evaluation.evaluate(path, info, split)
        exports.append(DetectionExport(
            mode, path, report.size_bytes, metrics, report.float_ops,
            report.xnnpack_partitions, str(report.parity)))
    return exports


def benchmark(exports: list[DetectionExport], name: str, macs: int | None = None,
              num_runs: int = 50):
    """Host latency of every written export (one child process, interleaved, 1 thread),
    as :class:`keras_mobile.benchmark.BenchmarkResult` rows whose ``extra`` holds the
    task and the COCO metrics."""
    import dataclasses as dc

    from keras_mobile.benchmark import host

    written = [e for e in exports if e.error is None]
    results = host.run_many([e.path for e in written], num_threads=1, num_runs=num_runs,
                            rounds=5, models=[name] * len(written),
                            modes=[e.mode for e in written], macs=[macs] * len(written))
    rows = []
    for export, result in zip(written, results, strict=True):
        export.latency_ms = result.median_ms
        rows.append(dc.replace(result, extra={**result.extra, "task": "detection",
                                              **{f"coco_{k}": v
                                                 for k, v in export.metrics.items()}}))
    return rows


def draw_detections(images, detections, class_names, path: str, *, ground_truth=None,
                    columns: int = 4, title: str | None = None) -> str:
    """A PNG grid of ``images`` (float [0, 255]) with their ``detections`` (one
    :class:`~keras_mobile.detection.Detections` each, boxes in input pixels): class name
    and score per box; ``ground_truth`` (per image ``(boxes normalized, labels)``)
    dashed in white."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab10")
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (image, found) in enumerate(zip(images, detections, strict=True)):
        ax = axes.ravel()[i]
        height, width = image.shape[:2]
        ax.imshow(np.clip(image, 0, 255).astype(np.uint8))
        if ground_truth is not None:
            for (y0, x0, y1, x1) in np.asarray(ground_truth[i][0]).reshape(-1, 4):
                ax.add_patch(plt.Rectangle((x0 * width, y0 * height), (x1 - x0) * width,
                                           (y1 - y0) * height, fill=False, ec="white",
                                           ls="--", lw=1))
        for (y0, x0, y1, x1), score, cls in zip(found.boxes, found.scores, found.classes,
                                                strict=True):
            colour = colours(int(cls) % 10)
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour,
                                       lw=1.5))
            ax.text(x0, y0, f"{class_names[int(cls)]} {score:.2f}", color="white",
                    fontsize=7, va="bottom", bbox={"fc": colour, "pad": 1, "lw": 0})
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return path


def write_report(model_dir: str, *, record: dict, history: list[dict],
                 exports: list[DetectionExport], keras_metrics: dict, seconds: dict,
                 machine: str, images_per_second: float, profile=None,
                 qat_history: list[dict] | None = None, qat_metrics: dict | None = None,
                 picture: str | None = None) -> str:
    """``model_dir/report.md`` and ``exports.json`` (the export table as data); returns
    the report path."""
    from keras_mobile.training.export import recipe_line

    kwargs = record["model_kwargs"]
    ap = lambda m: (f"{100 * m['AP']:.1f} / {100 * m['AP50']:.1f} / "  # noqa: E731
                    f"{100 * m['AP75']:.1f}") if m else ""
    lines = [
        f"# Training report: {kwargs['detector']} on {record['model']}, {record['dataset']}",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} · "
        f"{machine} · strategy {record['strategy']} · input {record['image_size']} px · "
        f"{record['num_classes']} classes",
        "",
        f"- Model: `{kwargs['detector']}` on `{record['model']}` "
        f"{kwargs.get('backbone_kwargs') or ''}"
        + (f", {profile.params:,} parameters, {profile.macs / 1e6:.0f}M MACs" if profile
           else ""),
        recipe_line(record["recipe"]),
        f"- COCO AP / AP50 / AP75 (Keras, validation): **{ap(keras_metrics)}**, training "
        f"throughput {images_per_second:.0f} images/s",
        *([f"- QAT fine-tune (tfmot, fake-quantized): {len(qat_history)} epochs, "
           f"AP / AP50 / AP75 **{ap(qat_metrics)}**"] if qat_history else []),
        "- Time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()),
        "",
        "## Epochs",
        "",
        "| Epoch | Train loss | Val loss | Val cls loss | Val box loss | Images/s | Seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [(str(h["epoch"] + 1), h) for h in history]
    rows += [(f"QAT {h['epoch'] + 1}", h) for h in qat_history or []]
    for label, h in rows:
        lines.append(f"| {label} | {h['loss']:.4f} | {h['val_loss']:.4f} | "
                     f"{h['val_cls_loss']:.4f} | {h['val_box_loss']:.4f} | "
                     f"{h['images_per_second']:.0f} | {h['epoch_seconds']:.1f} |")
    lines.append("")
    if exports:
        lines += [
            "## TFLite exports (MediaPipe ObjectDetector files; LiteRT, XNNPACK, 1 thread)",
            "",
            "| Mode | File | Size (KB) | AP / AP50 / AP75 in LiteRT | Latency (ms, median) | "
            "XNNPACK partitions | Float ops |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in exports:
            if e.error:
                lines.append(f"| {e.mode} | not written: {e.error[:200]} | | | | | |")
                continue
            latency = f"{e.latency_ms:.2f}" if e.latency_ms is not None else "not run"
            lines.append(f"| {e.mode} | {os.path.basename(e.path)} | {e.size_bytes / 1024:.0f} "
                         f"| {ap(e.metrics)} | {latency} | {e.xnnpack_partitions} | "
                         f"{e.float_ops} |")
        lines += ["", "Parity with the Keras detections (the export's check):", ""]
        lines += [f"- {e.mode}: {e.parity}" for e in exports if not e.error]
        lines.append("")
    if picture:
        lines += ["## Predicted boxes (validation images; dashed: ground truth)", "",
                  f"![predicted boxes]({os.path.basename(picture)})", ""]
    atomic_write(os.path.join(model_dir, "exports.json"),
                 json.dumps([dataclasses.asdict(e) for e in exports], indent=1) + "\n")
    path = os.path.join(model_dir, "report.md")
    atomic_write(path, "\n".join(lines))
    return path
