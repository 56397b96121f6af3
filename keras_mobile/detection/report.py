"""After training a detector: TFLite exports (MediaPipe ObjectDetector files), COCO AP
of each in LiteRT, host benchmark, a picture of predicted boxes, and the report.

What ``python scripts/train.py --task=detection`` runs after training; the pieces
are usable alone (:func:`export_detectors`, :func:`benchmark`, :func:`draw_detections`).
"""

from __future__ import annotations

import datetime
import os

import numpy as np

from keras_mobile import dense_report
from keras_mobile.dense_report import NUM_CALIBRATION_SAMPLES
from keras_mobile.dense_report import TaskExport as DetectionExport
from keras_mobile.detection.export import DetectionTolerance
from keras_mobile.files import atomic_path


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

    size = model.image_size[0]
    split = f"{eval_split}[:{max_examples}]" if max_examples and "[" not in eval_split \
        else eval_split
    return dense_report.export_files(
        model, model_dir, modes, prefix="detector", labels=info.class_names,
        calibration=evaluation_images(info, calibration_split, size, num_calibration_samples),
        check=evaluation_images(info, eval_split, size, 16),
        evaluate=lambda path: evaluation.evaluate(path, info, split), qat_model=qat_model,
        tolerance=tolerance)


export_models = export_detectors  # the name scripts/train.py uses for every task
# --smoke's untrained detections are noise that rounding reorders: measured, not gated.
SMOKE_TOLERANCE = DetectionTolerance(min_agreement=0.0)


def draw_validation(model, info, split: str, model_dir: str, count: int = 8) -> str:
    """``model_dir/detections.png``: the first ``count`` images of ``split`` with the
    detector's boxes (score >= 0.3) and the ground truth."""
    from keras_mobile.detection.training import evaluation_examples

    images, truth = evaluation_examples(info, split, model.image_size[0], count)
    return draw_detections(images, model.predict_boxes(images, score_threshold=0.3),
                           info.class_names, os.path.join(model_dir, "detections.png"),
                           ground_truth=truth,
                           title=f"{model.name}: Keras float32, score >= 0.3")


def benchmark(exports: list[DetectionExport], name: str, macs: int | None = None,
              num_runs: int = 50):
    """Host latency of every written export (one child process, interleaved, 1 thread),
    as :class:`keras_mobile.benchmark.BenchmarkResult` rows whose ``extra`` holds the
    task and the COCO metrics."""

    return dense_report.benchmark(exports, name, macs, task="detection",
                                  metric_prefix="coco_", num_runs=num_runs)


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
                 picture: str | None = None, class_names=()) -> str:
    """``model_dir/report.md`` and ``exports.json`` (the export table as data); returns
    the report path (``class_names``: unused, the segmentation report's per-class
    table)."""
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
    lines += dense_report.exports_section(
        exports, title="TFLite exports (MediaPipe ObjectDetector files; LiteRT, XNNPACK, "
        "1 thread)", metric_header="AP / AP50 / AP75 in LiteRT", metric=ap,
        parity_of="detections")
    if picture:
        lines += ["## Predicted boxes (validation images; dashed: ground truth)", "",
                  f"![predicted boxes]({os.path.basename(picture)})", ""]
    return dense_report.write_files(model_dir, lines, exports)
