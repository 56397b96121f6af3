"""Top-1 of a trained model (Keras, from its training --model_dir) or of a .tflite
file (in LiteRT) on a dataset split.

    python scripts/evaluate.py --model_dir=/ckpt/emo1m --dataset=imagenet2012 --split=validation
    python scripts/evaluate.py --tflite=/ckpt/emo1m/model_int8.tflite --dataset=imagenet2012

``--dataset`` defaults to the one the run in ``--model_dir`` was trained on (or
the embedded dataset). Installed as ``keras-mobile-evaluate``.
"""

from __future__ import annotations

import json
import os

from absl import flags

from keras_mobile.cli import fail, run_main

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A training --model_dir (reads run.json and weights).")
flags.DEFINE_enum("weights", "best", ["best", "final"], "Which weights of --model_dir.")
flags.DEFINE_string("tflite", None, "A .tflite classifier to run in LiteRT instead.")
flags.DEFINE_string("dataset", None, "Dataset name or folder (default: the run's, or "
                    "keras_mobile_shapes).")
flags.DEFINE_string("split", None, "Split (default: the dataset's evaluation split).")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data dir.")
flags.DEFINE_integer("batch_size", 128, "Batch size (Keras).")
flags.DEFINE_integer("max_examples", 0, "Evaluate the first N examples only (0: all).")


RUN_FIELDS = ("model", "model_kwargs", "dataset", "image_size", "num_classes")


def read_run(model_dir: str, weights: str) -> tuple[dict, str]:
    """``run.json`` of a training ``model_dir`` and the path of its ``weights``
    ("best"/"final") file, both checked (readable, complete) before any long work."""
    from keras_mobile.weights import check_weights_file

    if not os.path.isdir(model_dir):
        raise ValueError(f"--model_dir={model_dir} is not a folder.")
    path = os.path.join(model_dir, "run.json")
    if not os.path.exists(path):
        raise ValueError(f"{model_dir} is not a training model_dir (no run.json).")
    try:
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable run record ({error}).") from None
    missing = [k for k in RUN_FIELDS if k not in run] if isinstance(run, dict) else RUN_FIELDS
    if missing:
        raise ValueError(f"{path} is not a training run record (no {', '.join(missing)}).")
    weights_path = os.path.join(model_dir, f"{weights}.weights.h5")
    if not os.path.exists(weights_path):
        raise ValueError(f"{weights_path} does not exist (training has not finished"
                         f"{' an epoch' if weights == 'best' else ''}).")
    try:
        check_weights_file(weights_path)
    except FileNotFoundError as error:  # a broken link
        raise ValueError(str(error)) from None
    return run, weights_path


def evaluate_keras(model_dir: str, weights: str, dataset: str, split: str | None, data_dir,
                   batch_size: int, max_examples: int) -> dict:
    import keras
    import numpy as np

    from keras_mobile import data as kdata
    from keras_mobile.training import engine
    from keras_mobile.training.export import split_images
    from keras_mobile.weights import load_weights_file

    run, weights_path = read_run(model_dir, weights)
    info = kdata.dataset_info(dataset or run["dataset"], data_dir)
    if info.num_classes != run["num_classes"]:
        raise ValueError(f"the model has {run['num_classes']} classes, dataset {info.name!r} "
                         f"has {info.num_classes}.")
    split = split or info.catalogue.eval_split
    model = load_weights_file(engine.model_from_record(run), weights_path)
    images, labels = split_images(info, split, run["image_size"], max_examples or None)
    logits = model.predict(images, batch_size=batch_size, verbose=0)
    onehot = keras.utils.to_categorical(labels, run["num_classes"])
    loss = float(keras.losses.CategoricalCrossentropy(from_logits=True)(onehot, logits))
    return {"top1": float(np.mean(logits.argmax(-1) == labels)), "loss": loss,
            "examples": len(labels), "split": split, "dataset": info.name}


def evaluate_tflite(path: str, dataset: str, split: str | None, data_dir,
                    max_examples: int) -> dict:
    from keras_mobile import data as kdata
    from keras_mobile.tflite import runtime
    from keras_mobile.tflite.runtime import check_model_file
    from keras_mobile.training.export import split_images, tflite_accuracy

    check_model_file(path, "--tflite")
    it = runtime.interpreter(path)
    (inp,) = it.get_input_details()
    (out,) = it.get_output_details()
    info = kdata.dataset_info(dataset, data_dir)
    if out["shape"][-1] != info.num_classes:
        raise ValueError(f"the model has {out['shape'][-1]} outputs, dataset {info.name!r} has "
                         f"{info.num_classes} classes.")
    split = split or info.catalogue.eval_split
    images, labels = split_images(info, split, int(inp["shape"][1]), max_examples or None)
    return {"top1": tflite_accuracy(path, images, labels), "examples": len(labels),
            "split": split, "dataset": info.name}


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}.")
    from keras_mobile.data import DatasetError

    if bool(FLAGS.model_dir) == bool(FLAGS.tflite):
        fail("pass exactly one of --model_dir or --tflite.")
    try:
        if FLAGS.tflite:
            result = evaluate_tflite(FLAGS.tflite, FLAGS.dataset or "keras_mobile_shapes",
                                     FLAGS.split, FLAGS.data_dir, FLAGS.max_examples)
        else:
            result = evaluate_keras(FLAGS.model_dir, FLAGS.weights, FLAGS.dataset, FLAGS.split,
                                    FLAGS.data_dir, FLAGS.batch_size, FLAGS.max_examples)
    except (ValueError, DatasetError) as error:
        fail(str(error))
    print(json.dumps(result))


def run():
    run_main(main)


if __name__ == "__main__":
    run()
