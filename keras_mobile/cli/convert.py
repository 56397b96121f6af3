"""Convert a registered model to TFLite, checked against Keras in LiteRT.

    python scripts/convert.py --model=EMO1M --weights=/ckpt/emo1m.weights.h5 --mode=int8 \
        --calibration=/data/calib_images --output=emo1m_int8.tflite
    python scripts/convert.py --model=EMO1M --mode=int8_percentile --calibration=/data/calib
    python scripts/convert.py --model=MobileNetV2 --mode=float16 --labels=labels.txt

``--mode``: an export mode of a float model (``keras_mobile.export.EXPORT_MODES``
but ``qat_int8``). ``--weights``: None (random), "imagenet", a weights file, or a training
``--model_dir`` (its best or latest ``*.weights.h5``). ``--calibration``
(int8): a folder of images, a ``.npy`` array of images, or ``synthetic``
(latency only: synthetic images say nothing about real activation ranges).
Installed as ``keras-mobile-convert``.
"""

from __future__ import annotations

import glob
import os

from absl import flags

from keras_mobile.cli import fail, run_main
from keras_mobile.export import POST_TRAINING_MODES

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "EMO1M", "Registered model name (keras_mobile.list_models()).")
flags.DEFINE_string("weights", None, 'None, "imagenet", a weights file or a training model_dir.')
flags.DEFINE_enum("mode", "float32", list(POST_TRAINING_MODES),
                  "Export mode (keras_mobile.export): int8 calibrates each tensor's min/max "
                  "(the TFLite converter's), int8_percentile its 0.01th-99.99th percentiles "
                  "(keras_mobile models).")
flags.DEFINE_string("output", None, "The .tflite file to write (default: <model>_<mode>.tflite).")
flags.DEFINE_integer("input_size", None, "Square input size (default: the model's own).")
flags.DEFINE_integer("classes", 1000, "Number of classes of the head.")
flags.DEFINE_string("calibration", None,
                    'int8 calibration images: a folder, a .npy file, or "synthetic".')
flags.DEFINE_integer("num_calibration_samples", 100, "Images used for int8 calibration.")
flags.DEFINE_enum("calibration_method", None, ["minmax", "percentile"],
                  "Deprecated: --mode=int8 --calibration_method=percentile is "
                  "--mode=int8_percentile.")
flags.DEFINE_enum("inference_type", "float32", ["float32", "int8", "uint8"],
                  "int8 mode: input/output type (uint8 for MediaPipe / Task Library).")
flags.DEFINE_string("labels", None, "A labels file (one class per line) written as metadata.")
flags.DEFINE_string("author", None, "Metadata author.")
flags.DEFINE_string("license", None, "Metadata license.")
flags.DEFINE_bool("check", True, "Compare the TFLite model with Keras in LiteRT before writing.")
flags.DEFINE_bool("smoke", False, "Tiny run for tests: 64 px, 10 classes, synthetic calibration.")


def weights_file(weights):
    """``weights`` as the builders take it; a folder means its best or latest weights.
    A file is checked to be a readable weights file here, before any long work."""
    from keras_mobile.weights import check_weights_file

    if weights in (None, "None", "none", ""):
        return None
    if weights == "imagenet":
        return weights
    if os.path.isdir(weights):
        for pattern in ("best*.weights.h5", "*.weights.h5", "*.h5"):
            found = sorted(glob.glob(os.path.join(weights, pattern)), key=os.path.getmtime)
            if found:
                break
        else:
            fail(f"--weights={weights} is a folder with no *.weights.h5 file.")
        weights = found[-1]
    try:
        return check_weights_file(weights)
    except (FileNotFoundError, ValueError) as error:
        fail(f"--weights: {error}")


def read_labels(path: str, classes: int) -> list[str]:
    """The labels file (one class per line, blank lines skipped), checked as the
    metadata writer will check it, before converting."""
    from keras_mobile.tflite.metadata import check_labels

    try:
        with open(path, encoding="utf-8") as f:
            labels = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        fail(f"--labels={path} cannot be read ({error}).")
    try:
        check_labels(labels)
    except (TypeError, ValueError) as error:
        fail(f"--labels={path}: {error}")
    if len(labels) != classes:
        fail(f"--labels={path} has {len(labels)} labels; the model has {classes} classes "
             "(--classes).")
    return labels


def main(argv):
    del argv
    import keras_mobile
    from keras_mobile import tflite
    from keras_mobile.data.samples import load_images, synthetic_images
    from keras_mobile.export import conversion_mode, export
    from keras_mobile.files import check_output_path

    try:
        entry = keras_mobile.registry.get_entry(FLAGS.model)
    except ValueError as error:
        fail(str(error))
    size = 64 if FLAGS.smoke else FLAGS.input_size
    classes = 10 if FLAGS.smoke else FLAGS.classes
    calibration = "synthetic" if FLAGS.smoke and FLAGS.calibration is None else FLAGS.calibration
    mode = FLAGS.mode
    if FLAGS.calibration_method is not None:  # the deprecated spelling of the mode
        if mode != "int8":
            fail(f"--calibration_method (deprecated: use --mode=int8_percentile) sets the ranges "
                 f"of --mode=int8. Received: --mode={mode}")
        mode = "int8_percentile" if FLAGS.calibration_method == "percentile" else "int8"
    int8 = conversion_mode(mode) == "int8"
    if int8 and calibration is None:
        fail(f"--mode={mode} needs --calibration (a folder of images, a .npy file, "
             "or 'synthetic' for latency-only models).")
    if FLAGS.inference_type != "float32" and not int8:
        fail("--inference_type applies to the int8 modes only.")
    try:
        output = check_output_path(FLAGS.output or f"{entry.name}_{mode}.tflite", "--output",
                                   suffix=".tflite")
    except ValueError as error:
        fail(str(error))
    labels = read_labels(FLAGS.labels, classes) if FLAGS.labels else None
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
            data = synthetic_images(FLAGS.num_calibration_samples, shape)
        elif calibration:
            data = load_images(calibration, shape, FLAGS.num_calibration_samples)
        report = export(
            model, output, mode, representative_data=data,
            num_calibration_samples=FLAGS.num_calibration_samples,
            inference_input_type=FLAGS.inference_type,
            inference_output_type=FLAGS.inference_type, check=FLAGS.check, metadata=metadata)
    except (ValueError, tflite.ConversionError) as error:  # named, before or after converting
        fail(str(error))
    print(report)


def run():
    run_main(main)


if __name__ == "__main__":
    run()
