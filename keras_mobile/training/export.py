"""After training: TFLite export, accuracy in LiteRT, host benchmark, and the report
(markdown with tables, and a plot of the loss/accuracy curves)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os

import numpy as np

from keras_mobile.data.samples import split_images  # also imported from here (engine, cli)
from keras_mobile.export import POST_TRAINING_MODES, conversion_mode
from keras_mobile.files import atomic_path, atomic_write

# The export modes of the trained float model (keras_mobile.export.EXPORT_MODES but
# qat_int8, which the QAT stage's model exports to).
TFLITE_MODES = POST_TRAINING_MODES


@dataclasses.dataclass
class Export:
    mode: str
    path: str
    size_bytes: int
    top1: float  # on the evaluation split, in LiteRT
    float_ops: int
    xnnpack_partitions: int
    latency_ms: float | None = None  # host benchmark median, 1 thread
    error: str | None = None  # the conversion or its parity check failed: nothing written


NUM_CALIBRATION_SAMPLES = 200  # int8 calibration images (the converter's, and QAT's ranges)


def tflite_accuracy(model, images: np.ndarray, labels: np.ndarray) -> float:
    from keras_mobile.tflite import runtime

    it = runtime.interpreter(model, num_threads=1)  # a path or flatbuffer bytes
    (scores,) = runtime.predict(it, images)
    return float(np.mean(scores.argmax(-1) == labels))


def export_tflite(model, model_dir: str, modes, *, info, image_size: int, name: str,
                  eval_split: str, calibration_split: str, qat_model=None,
                  num_calibration_samples: int = NUM_CALIBRATION_SAMPLES,
                  check_samples: int = 64) -> list[Export]:
    """Exports ``model`` (softmax head) to ``model_dir/model_<mode>.tflite`` for each
    export mode (``TFLITE_MODES``: ``keras_mobile.export.EXPORT_MODES`` but
    ``qat_int8``), with labels metadata; the int8 modes are full integer with
    uint8 I/O (what MediaPipe and Android image pipelines feed), calibrated on
    the training split. ``qat_model`` (a tfmot QAT model with a logits head) is
    exported as ``qat_int8`` to ``model_qat_int8.tflite``, with a softmax appended
    so that every int8 model outputs probabilities."""
    from keras_mobile import tflite
    from keras_mobile.export import export

    unknown = set(modes) - set(TFLITE_MODES)
    if unknown:
        raise ValueError(f"export modes must be in {list(TFLITE_MODES)}. "
                         f"Received: {sorted(unknown)}")
    images, labels = split_images(info, eval_split, image_size)
    jobs = [(mode, model) for mode in modes]  # (export mode, model)
    if qat_model is not None:
        jobs.append(("qat_int8", _with_softmax(qat_model)))
    calibration = None
    if any(conversion_mode(mode) == "int8" for mode, _ in jobs):
        calibration, _ = split_images(info, calibration_split, image_size,
                                      num_calibration_samples)
    exports = []
    for mode, source in jobs:
        path = os.path.join(model_dir, f"model_{mode}.tflite")
        io_type = "uint8" if conversion_mode(mode) == "int8" else "float32"
        try:
            report = export(
                source, path, mode, representative_data=calibration,
                num_calibration_samples=num_calibration_samples,
                inference_input_type=io_type,
                inference_output_type=io_type, check_data=images[:check_samples],
                num_check_samples=check_samples,
                metadata={"labels": list(info.class_names), "name": name})
        except tflite.ConversionError as error:  # reported, the other modes go on
            print(f"warning: {mode} export failed: {error}", flush=True)
            # The top-1 of a model the parity gate refused: the baseline the report shows.
            top1 = (float("nan") if error.flatbuffer is None
                    else tflite_accuracy(error.flatbuffer, images, labels))
            exports.append(Export(mode, path, 0, top1, -1, -1, error=str(error)))
            continue
        exports.append(Export(mode, path, report.size_bytes, tflite_accuracy(path, images, labels),
                              report.float_ops, report.xnnpack_partitions))
    return exports


def _with_softmax(qat_model):
    import tf_keras

    probabilities = tf_keras.layers.Softmax(name="probabilities")(qat_model.outputs[0])
    return tf_keras.Model(qat_model.inputs, probabilities, name=qat_model.name)


def benchmark(exports: list[Export], model_name: str, macs: int | None = None,
              num_runs: int = 50):
    """Host latency of every export (one child process, interleaved, 1 thread)."""
    from keras_mobile.benchmark import host

    exports = [e for e in exports if e.error is None]
    results = host.run_many([e.path for e in exports], num_threads=1, num_runs=num_runs,
                            rounds=5, models=[model_name] * len(exports),
                            modes=[e.mode for e in exports], macs=[macs] * len(exports),
                            top1=[e.top1 for e in exports])
    for export, result in zip(exports, results, strict=True):
        export.latency_ms = result.median_ms
    return results


def plot_curves(history: list[dict], path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] + 1 for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [h["loss"] for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.plot(epochs, [100 * h["accuracy"] for h in history], "o-", label="train")
    ax_acc.plot(epochs, [100 * h["val_accuracy"] for h in history], "o-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)", title="Accuracy", ylim=(0, 100))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def recipe_line(recipe: dict) -> str:
    """The report's line on a run's recipe (``run.json``'s ``recipe``)."""
    return (f"- Recipe: {recipe['source']}; {recipe['optimizer']} lr {recipe['learning_rate']:g} "
            f"at batch {recipe['reference_batch_size']}, global batch {recipe['batch_size']}, "
            f"{recipe['epochs']} epochs")


def write_report(model_dir: str, *, record: dict, history: list[dict], exports: list[Export],
                 seconds: dict, machine: str, images_per_second: float,
                 qat_history: list[dict] | None = None) -> str:
    """``model_dir/report.md``, ``curves.png`` and ``exports.json`` (the export table
    as data); returns the report path."""
    plot_curves(history, os.path.join(model_dir, "curves.png"))
    best = max(history, key=lambda h: h["val_accuracy"])
    last = history[-1]
    lines = [
        f"# Training report: {record['model']} on {record['dataset']}",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} · "
        f"{machine} · strategy {record['strategy']} · image size {record['image_size']} · "
        f"{record['num_classes']} classes",
        "",
        f"- Model: `{record['model']}` {record['model_kwargs'] or ''}",
        recipe_line(record["recipe"]),
        f"- Final validation top-1 **{100 * last['val_accuracy']:.2f}%** (best "
        f"{100 * best['val_accuracy']:.2f}% at epoch {best['epoch'] + 1}), "
        f"training throughput {images_per_second:.0f} images/s",
        *([f"- QAT fine-tune (tfmot, fake-quantized): {len(qat_history)} epochs, validation "
           f"top-1 **{100 * qat_history[-1]['val_accuracy']:.2f}%**"] if qat_history else []),
        "- Time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()),
        "",
        "## Epochs",
        "",
        "| Epoch | Train loss | Train top-1 | Val loss | Val top-1 | Images/s | Seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [(str(h["epoch"] + 1), h) for h in history]
    rows += [(f"QAT {h['epoch'] + 1}", h) for h in qat_history or []]
    for label, h in rows:
        lines.append(f"| {label} | {h['loss']:.4f} | {100 * h['accuracy']:.2f}% | "
                     f"{h['val_loss']:.4f} | {100 * h['val_accuracy']:.2f}% | "
                     f"{h['images_per_second']:.0f} | {h['epoch_seconds']:.1f} |")
    lines += ["", "![loss and accuracy](curves.png)", ""]
    if exports:
        lines += [
            "## TFLite exports (LiteRT, XNNPACK, 1 thread)",
            "",
            "| Mode | File | Size (KB) | Val top-1 in LiteRT | Latency (ms, median) | "
            "XNNPACK partitions | Float ops |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in exports:
            if e.error:
                top1 = "" if np.isnan(e.top1) else f"{100 * e.top1:.2f}% (refused model)"
                lines.append(f"| {e.mode} | not written: {e.error.split(':')[0]} "
                             f"({e.error.split(': ', 1)[-1][:160]}) | | {top1} | | | |")
                continue
            latency = f"{e.latency_ms:.3f}" if e.latency_ms is not None else "not run"
            lines.append(f"| {e.mode} | {os.path.basename(e.path)} | {e.size_bytes / 1024:.0f} | "
                         f"{100 * e.top1:.2f}% | {latency} | {e.xnnpack_partitions} | "
                         f"{e.float_ops} |")
        lines.append("")
    atomic_write(os.path.join(model_dir, "exports.json"),
                 json.dumps([dataclasses.asdict(e) for e in exports], indent=1) + "\n")
    path = os.path.join(model_dir, "report.md")
    atomic_write(path, "\n".join(lines))
    return path
