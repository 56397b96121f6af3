"""Convert a registered model to TFLite, checked against Keras in LiteRT.

    python scripts/convert.py --model=EMO1M --weights=/ckpt/emo1m.weights.h5 --mode=int8 \
        --calibration=/data/calib_images --output=emo1m_int8.tflite
    python scripts/convert.py --model=MobileNetV2 --mode=float16 --labels=labels.txt

``--weights``: None (random), "imagenet", a weights file, or a training
``--model_dir`` (its best or latest ``*.weights.h5``). ``--calibration``
(int8): a folder of images, a ``.npy`` array of images, or ``synthetic``
(latency only: synthetic images say nothing about real activation ranges).
Installed as ``keras-mobile-convert``.
"""

from __future__ import annotations

import glob
import os

from absl import app, flags

from keras_mobile.cli import fail

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "EMO1M", "Registered model name (keras_mobile.list_models()).")
flags.DEFINE_string("weights", None, 'None, "imagenet", a weights file or a training model_dir.')
flags.DEFINE_enum("mode", "float32", ["float32", "float16", "dynamic", "int8"], "Conversion mode.")
flags.DEFINE_string("output", None, "The .tflite file to write (default: <model>_<mode>.tflite).")
flags.DEFINE_integer("input_size", None, "Square input size (default: the model's own).")
flags.DEFINE_integer("classes", 1000, "Number of classes of the head.")
flags.DEFINE_string("calibration", None,
                    'int8 calibration images: a folder, a .npy file, or "synthetic".')
flags.DEFINE_integer("num_calibration_samples", 100, "Images used for int8 calibration.")
flags.DEFINE_enum("calibration_method", "minmax", ["minmax", "percentile"],
                  "int8 activation ranges: each tensor's min/max (the TFLite converter's), or "
                  "its 0.01th-99.99th percentiles (keras_mobile models).")
flags.DEFINE_enum("inference_type", "float32", ["float32", "int8", "uint8"],
                  "int8 mode: input/output type (uint8 for MediaPipe / Task Library).")
flags.DEFINE_string("labels", None, "A labels file (one class per line) written as metadata.")
flags.DEFINE_string("author", None, "Metadata author.")
flags.DEFINE_string("license", None, "Metadata license.")
flags.DEFINE_bool("check", True, "Compare the TFLite model with Keras in LiteRT before writing.")
flags.DEFINE_bool("smoke", False, "Tiny run for tests: 64 px, 10 classes, synthetic calibration.")


def weights_file(weights):
    """``weights`` as the builders take it; a folder means its best or latest weights."""
    if weights in (None, "None", "none", ""):
        return None
    if weights == "imagenet" or not os.path.isdir(weights):
        return weights
    for pattern in ("best*.weights.h5", "*.weights.h5", "*.h5"):
        found = sorted(glob.glob(os.path.join(weights, pattern)), key=os.path.getmtime)
        if found:
            return found[-1]
    fail(f"--weights={weights} is a folder with no *.weights.h5 file.")


def main(argv):
    del argv
    import keras_mobile
    from keras_mobile import tflite
    from keras_mobile.tflite.samples import load_images

    try:
        entry = keras_mobile.registry.get_entry(FLAGS.model)
    except ValueError as error:
        fail(str(error))
    size = 64 if FLAGS.smoke else FLAGS.input_size
    classes = 10 if FLAGS.smoke else FLAGS.classes
    calibration = "synthetic" if FLAGS.smoke and FLAGS.calibration is None else FLAGS.calibration
    if FLAGS.mode == "int8" and calibration is None:
        fail("--mode=int8 needs --calibration (a folder of images, a .npy file, "
             "or 'synthetic' for latency-only models).")
    if FLAGS.inference_type != "float32" and FLAGS.mode != "int8":
        fail("--inference_type applies to --mode=int8 only.")
    labels = None
    if FLAGS.labels:
        with open(FLAGS.labels, encoding="utf-8") as f:
            labels = [line.strip() for line in f if line.strip()]
    output = FLAGS.output or f"{entry.name}_{FLAGS.mode}.tflite"
    kwargs = {"weights": weights_file(FLAGS.weights), "classes": classes}
    if size:
        kwargs["input_shape"] = (size, size, 3)
    metadata = None
    if labels is not None:
        metadata = {"labels": labels, "name": entry.name, "author": FLAGS.author,
                    "license": FLAGS.license}
    try:
        model = keras_mobile.get_model(entry.name, **kwargs)
        shape = tuple(model.inputs[0].shape[1:])
        data = None
        if calibration == "synthetic":
            data = tflite.synthetic_images(FLAGS.num_calibration_samples, shape)
        elif calibration:
            data = load_images(calibration, shape, FLAGS.num_calibration_samples)
        report = tflite.convert(
            model, output, mode=FLAGS.mode, representative_data=data,
            num_calibration_samples=FLAGS.num_calibration_samples,
            calibration_method=FLAGS.calibration_method,
            inference_input_type=FLAGS.inference_type,
            inference_output_type=FLAGS.inference_type, check=FLAGS.check, metadata=metadata)
    except (ValueError, tflite.ConversionError) as error:  # named, before or after converting
        fail(str(error))
    print(report)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
