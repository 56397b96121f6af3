"""Float vs post-training int8 (min/max and percentile ranges) vs QAT int8 top-1, per
family, on the embedded dataset.

Runs ``scripts/train.py`` once per model (float training, QAT fine-tune, TFLite
exports evaluated in LiteRT) and writes ``<out>/report.md`` and ``results.json``:

    python scripts/qat_accuracy.py --out=results/qat-accuracy --epochs=8
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import app, flags

from keras_mobile.files import atomic_write

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large",
                             "MobileNeXt", "EfficientNetB0", "EMO1M"], "Registered models.")
flags.DEFINE_string("out", "results/qat-accuracy", "Report directory.")
flags.DEFINE_string("runs", "runs/qat-accuracy", "Training runs (resumed if present).")
flags.DEFINE_integer("epochs", 8, "Float epochs (the main-job recipe otherwise).")
flags.DEFINE_integer("qat_epochs", 2, "QAT epochs.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data dir.")
flags.DEFINE_bool("report_only", False, "Rewrite report.md from <out>/results.json.")


def _train(model: str) -> dict:
    model_dir = os.path.join(FLAGS.runs, model)
    args = [sys.executable, os.path.join(os.path.dirname(__file__), "train.py"),
            f"--model={model}", f"--model_dir={model_dir}", f"--epochs={FLAGS.epochs}",
            f"--qat_epochs={FLAGS.qat_epochs}", "--export=float32,int8,int8_percentile",
            "--nobenchmark", "--verbose=2"]
    if FLAGS.data_dir:
        args.append(f"--data_dir={FLAGS.data_dir}")
    subprocess.run(args, check=True)

    def read(*path):
        with open(os.path.join(model_dir, *path), encoding="utf-8") as f:
            return json.load(f)

    exports = {e["mode"]: e for e in read("exports.json")}
    return dict(model=model, float_val_top1=read("history.json")[-1]["val_accuracy"],
                qat_val_top1=read("qat", "history.json")[-1]["val_accuracy"],
                tflite={mode: dict(top1=e["top1"], float_ops=e["float_ops"],
                                   xnnpack_partitions=e["xnnpack_partitions"],
                                   written=e["error"] is None) for mode, e in exports.items()})


def _pct(value) -> str:
    return "—" if value != value else f"{100 * value:.2f}%"  # nan: not measured


def write_report(out: str, results: dict) -> None:
    lines = ["# Float vs int8 top-1 on keras_mobile_shapes (validation, 1000 images, 64 px)",
             "", f"{results['machine']}; {results['epochs']} float epochs (main-job recipe), "
             f"{results['qat_epochs']} QAT epochs; TFLite top-1 measured in LiteRT. The QAT "
             "model trains longer than the float one, so QAT int8 − float mixes training and "
             "quantization; QAT int8 − fake-quant is the loss of the conversion itself.", "",
             "PTQ int8 min/max is the TFLite converter's calibration (export mode `int8`); "
             "percentile: export mode `int8_percentile` "
             "(`keras_mobile.quantization.post_training_graph(calibration_method=\"percentile\")`).",
             "",
             "| Model | float32 TFLite | PTQ int8 min/max | PTQ int8 percentile | "
             "QAT fake-quant (tf_keras) | QAT int8 | "
             "QAT int8 − float | QAT int8 − fake-quant | QAT int8 float ops | "
             "QAT int8 XNNPACK partitions |", "|---|---|---|---|---|---|---|---|---|---|"]

    def ptq(export):
        if export is None:
            return "—"
        return _pct(export["top1"]) + ("" if export["written"] else " (fails gate)")

    for r in results["rows"]:
        t = r["tflite"]
        qat = t["qat_int8"]["top1"]
        lines.append(f"| {r['model']} | {_pct(t['float32']['top1'])} | {ptq(t['int8'])} | "
                     f"{ptq(t.get('int8_percentile'))} | "
                     f"{_pct(r['qat_val_top1'])} | {_pct(qat)} | "
                     f"{100 * (qat - t['float32']['top1']):+.2f} | "
                     f"{100 * (qat - r['qat_val_top1']):+.2f} | "
                     f"{t['qat_int8']['float_ops']} | {t['qat_int8']['xnnpack_partitions']} |")
    atomic_write(os.path.join(out, "report.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv):
    del argv
    from keras_mobile.benchmark import host

    path = os.path.join(FLAGS.out, "results.json")
    if FLAGS.report_only:
        with open(path, encoding="utf-8") as f:
            return write_report(FLAGS.out, json.load(f))
    results = dict(machine=host.machine(), epochs=FLAGS.epochs, qat_epochs=FLAGS.qat_epochs,
                   rows=[_train(model) for model in FLAGS.models])
    os.makedirs(FLAGS.out, exist_ok=True)
    atomic_write(path, json.dumps(results, indent=1))
    return write_report(FLAGS.out, results)


if __name__ == "__main__":
    app.run(main)
