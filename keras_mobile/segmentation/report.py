"""After training a segmenter: TFLite exports (MediaPipe ImageSegmenter files), mean IoU
of each in LiteRT, host benchmark, a picture of predicted masks, and the report.

What ``python scripts/train.py --task=segmentation`` runs after training; the pieces
are usable alone (:func:`export_segmenters`, :func:`benchmark`, :func:`draw_masks`).
"""

from __future__ import annotations

import datetime
import os

import numpy as np

from keras_mobile import dense_report
from keras_mobile.dense_report import NUM_CALIBRATION_SAMPLES, TaskExport
from keras_mobile.files import atomic_path
from keras_mobile.segmentation.export import SegmentationTolerance


def export_segmenters(model, model_dir: str, modes, *, info, eval_split: str,
                      calibration_split: str, qat_model=None,
                      num_calibration_samples: int = NUM_CALIBRATION_SAMPLES,
                      tolerance=None) -> list[TaskExport]:
    """The float segmenter ``model`` to ``model_dir/segmenter_<mode>.tflite`` per export
    mode (one logits output, MediaPipe ImageSegmenter metadata with the dataset's class
    names; int8 takes uint8 input), ``qat_model`` (its fine-tuned
    :func:`~keras_mobile.segmentation.quantize.quantize_segmenter` twin) as ``qat_int8``;
    then the mean IoU of every file in LiteRT on ``eval_split``."""
    from keras_mobile.segmentation import evaluation
    from keras_mobile.segmentation.data import evaluation_examples

    size = model.image_size[0]
    return dense_report.export_files(
        model, model_dir, modes, prefix="segmenter", labels=info.class_names,
        calibration=evaluation_examples(info, calibration_split, size,
                                        num_calibration_samples)[0],
        check=evaluation_examples(info, eval_split, size, 16)[0],
        evaluate=lambda path: evaluation.evaluate(path, info, eval_split),
        qat_model=qat_model, tolerance=tolerance)


export_models = export_segmenters  # the name scripts/train.py uses for every task
# --smoke's untrained logits are near-ties that rounding flips: measured, not gated.
SMOKE_TOLERANCE = SegmentationTolerance(min_pixel_agreement=0.0)


def draw_validation(model, info, split: str, model_dir: str, count: int = 6) -> str:
    """``model_dir/masks.png``: the first ``count`` images of ``split`` with the
    segmenter's masks and the ground truth."""
    from keras_mobile.segmentation.data import evaluation_examples

    images, labels = evaluation_examples(info, split, model.image_size[0], count)
    return draw_masks(images, model.predict_masks(images), info.class_names,
                      os.path.join(model_dir, "masks.png"), labels=labels,
                      title=f"{model.name}: Keras float32")


def benchmark(exports: list[TaskExport], name: str, macs: int | None = None,
              num_runs: int = 50):
    """Host latency rows of the written exports (``extra``: task, ``seg_miou``,
    ``seg_pixel_accuracy``)."""
    return dense_report.benchmark(exports, name, macs, task="segmentation",
                                  metric_prefix="seg_", num_runs=num_runs)


def palette(num_classes: int) -> np.ndarray:
    """``[C, 3]`` uint8 colours: class 0 black, the others from matplotlib's tab20."""
    import matplotlib

    colours = matplotlib.colormaps["tab20"](np.arange(max(num_classes - 1, 1)) % 20)[:, :3]
    return np.concatenate([[[0, 0, 0]], np.round(colours * 255)]).astype(np.uint8)[:num_classes]


def draw_masks(images, masks, class_names, path: str, *, labels=None, alpha: float = 0.5,
               title: str | None = None) -> str:
    """A PNG: per image (float [0, 255]) the predicted ``masks`` (class ids) drawn over it,
    and beside it the ground truth ``labels`` (255: ignored, drawn white) when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = palette(len(class_names))
    columns = 2 if labels is not None else 1
    fig, axes = plt.subplots(len(images), columns, figsize=(2.6 * columns, 2.6 * len(images)),
                             squeeze=False)

    def overlay(image, ids):
        ids = np.asarray(ids)
        colour = np.where((ids == 255)[..., None], 255, colours[np.minimum(ids, len(colours) - 1)])
        return (np.clip(image, 0, 255) * (1 - alpha) + colour * alpha).astype(np.uint8)

    for i, image in enumerate(images):
        axes[i, 0].imshow(overlay(image, masks[i]))
        if labels is not None:
            axes[i, 1].imshow(overlay(image, labels[i]))
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].set_title("predicted", fontsize=9)
    if labels is not None:
        axes[0, 1].set_title("ground truth", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[c] / 255)
               for c in range(len(class_names))]
    fig.legend(handles, class_names, loc="lower center", ncol=min(4, len(class_names)),
               fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return path


def _miou(metrics: dict | None) -> str:
    if not metrics:
        return ""
    return f"{100 * metrics['miou']:.1f} / {100 * metrics['pixel_accuracy']:.1f}"


def write_report(model_dir: str, *, record: dict, history: list[dict],
                 exports: list[TaskExport], keras_metrics: dict, seconds: dict, machine: str,
                 images_per_second: float, profile=None, qat_history: list[dict] | None = None,
                 qat_metrics: dict | None = None, picture: str | None = None,
                 class_names=()) -> str:
    """``model_dir/report.md`` and ``exports.json``; returns the report path."""
    from keras_mobile.training.export import recipe_line

    kwargs = record["model_kwargs"]
    model = f"{kwargs['segmenter']} on {record['model']}"
    lines = [
        f"# Training report: {model}, {record['dataset']}",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} · "
        f"{machine} · strategy {record['strategy']} · input {record['image_size']} px · "
        f"{record['num_classes']} classes",
        "",
        f"- Model: `{kwargs['segmenter']}` {kwargs.get('segmenter_kwargs') or ''}".rstrip()
        + f" on `{record['model']}` {kwargs.get('backbone_kwargs') or ''}".rstrip()
        + (f", {profile.trainable_params:,} parameters, {profile.macs / 1e6:.0f}M MACs"
           if profile else ""),
        recipe_line(record["recipe"]),
        f"- mIoU / pixel accuracy (Keras, validation): **{_miou(keras_metrics)}**, training "
        f"throughput {images_per_second:.0f} images/s",
        *([f"- QAT fine-tune (tfmot, fake-quantized): {len(qat_history)} epochs, "
           f"mIoU / pixel accuracy **{_miou(qat_metrics)}**"] if qat_history else []),
        "- Time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()),
        "",
        "## Epochs",
        "",
        "| Epoch | Train loss | Train pixel acc | Val loss | Val mIoU | Val pixel acc | "
        "Images/s | Seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [(str(h["epoch"] + 1), h) for h in history]
    rows += [(f"QAT {h['epoch'] + 1}", h) for h in qat_history or []]
    for label, h in rows:
        lines.append(f"| {label} | {h['loss']:.4f} | {h['pixel_accuracy']:.3f} | "
                     f"{h['val_loss']:.4f} | {h['val_miou']:.3f} | "
                     f"{h['val_pixel_accuracy']:.3f} | {h['images_per_second']:.0f} | "
                     f"{h['epoch_seconds']:.1f} |")
    lines.append("")
    if class_names and keras_metrics.get("iou"):
        lines += ["## IoU per class (Keras float32, validation)", "",
                  "| " + " | ".join(class_names) + " |",
                  "|" + "---|" * len(class_names),
                  "| " + " | ".join("" if v is None else f"{100 * v:.1f}"
                                    for v in keras_metrics["iou"]) + " |", ""]
    lines += dense_report.exports_section(
        exports, title="TFLite exports (MediaPipe ImageSegmenter files; LiteRT, XNNPACK, "
        "1 thread)", metric_header="mIoU / pixel acc in LiteRT", metric=_miou,
        parity_of="masks")
    if picture:
        lines += ["## Predicted masks (validation images; right: ground truth)", "",
                  f"![predicted masks]({os.path.basename(picture)})", ""]
    return dense_report.write_files(model_dir, lines, exports)
