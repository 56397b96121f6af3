"""Top-1 of a trained classifier, COCO box AP of a trained detector, or mean IoU of a
trained segmenter, on a dataset split: a training run (Keras, from its --model_dir) or a
.tflite file (in LiteRT).

    python scripts/evaluate.py --model_dir=/ckpt/emo1m --dataset=imagenet2012 --split=validation
    python scripts/evaluate.py --tflite=/ckpt/emo1m/model_int8.tflite --dataset=imagenet2012
    python scripts/evaluate.py --model_dir=/ckpt/ssd  # COCO AP, AP50, AP75, APs/m/l
    python scripts/evaluate.py --model_dir=/ckpt/ssd/qat  # its quantization-aware run
    python scripts/evaluate.py --tflite=/ckpt/ssd/detector_int8.tflite --dataset=coco/2017
    python scripts/evaluate.py --model_dir=/ckpt/deeplab  # mIoU, pixel accuracy, IoU per class
    python scripts/evaluate.py --tflite=runs/seg/segmenter_qat_int8.tflite

A classifier prints one JSON line (top1, loss, examples, split, dataset). A detector
(a run of ``scripts/train.py --task=detection``, or a ``.tflite`` with
``TFLite_Detection_PostProcess``: ``export_detector(..., form="nms")``) prints its COCO
metrics one per line (``n/a``: no ground truth of that size), the machine and date,
then the same as one JSON line. A segmenter (a run of ``--task=segmentation``, or a
``.tflite`` whose one output is ``[1, H, W, C]`` at its input size) prints one JSON line
(miou, pixel_accuracy, iou per class, images, split, dataset).

``--dataset`` defaults to the one the run in ``--model_dir`` was trained on (or
the embedded dataset: ``keras_mobile_shapes``, for a detector .tflite
``keras_mobile_shapes_detection``). Installed as ``keras-mobile-evaluate``.
"""

from __future__ import annotations

import json
import os

from absl import flags

from keras_mobile.cli import fail, run_main

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A training --model_dir (reads run.json and weights).")
flags.DEFINE_enum("weights", "best", ["best", "final"], "Which weights of --model_dir.")
flags.DEFINE_string("tflite", None, "A .tflite classifier or detector (NMS form) to run in "
                    "LiteRT instead.")
flags.DEFINE_string("dataset", None, "Dataset name or folder (default: the run's, or "
                    "keras_mobile_shapes; keras_mobile_shapes_detection for a detector).")
flags.DEFINE_string("split", None, "Split (default: the dataset's evaluation split).")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data dir.")
flags.DEFINE_integer("batch_size", 128, "Batch size (Keras; a detector: 32 unless given).")
flags.DEFINE_integer("max_examples", 0, "Evaluate the first N examples only (0: all).")


RUN_FIELDS = ("model", "model_kwargs", "dataset", "image_size", "num_classes")
DETECTION_DATASET = "keras_mobile_shapes_detection"  # the embedded detection dataset
DETECTION_BATCH_SIZE = 32  # keras_mobile.detection.evaluation.evaluate's


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
                   batch_size: int, max_examples: int, *,
                   detection_batch_size: int | None = None) -> dict:
    """Top-1 of a classifier's run; COCO metrics of a detector's
    (:func:`evaluate_detector_run`, batches of ``detection_batch_size``, default 32)."""
    import keras
    import numpy as np

    from keras_mobile import data as kdata
    from keras_mobile.training import engine
    from keras_mobile.training.export import split_images
    from keras_mobile.weights import load_weights_file

    run, weights_path = read_run(model_dir, weights)
    from keras_mobile.detection.training import is_detection_record
    from keras_mobile.segmentation.training import is_segmentation_record

    if is_detection_record(run):
        return evaluate_detector_run(run, weights_path, dataset, split, data_dir,
                                     detection_batch_size, max_examples)
    if is_segmentation_record(run):
        return evaluate_segmenter(run, weights_path, dataset or run["dataset"], split,
                                  data_dir, max_examples)
    info = kdata.dataset_info(dataset or run["dataset"], data_dir)
    if "classification" not in info.tasks:  # before the class count: the model classifies
        raise ValueError(f"the run in {model_dir} is a classifier; dataset {info.name!r} is a "
                         f"{info.task} dataset: pass a classification dataset (--dataset).")
    if info.num_classes != run["num_classes"]:
        raise ValueError(f"the model has {run['num_classes']} classes, dataset {info.name!r} "
                         f"has {info.num_classes}.")
    split = split or info.catalogue.eval_split
    if run.get("qat"):  # the run in <model_dir>/qat: the tf_keras QAT model (logits)
        model = load_weights_file(engine.qat_model_from_record(run), weights_path)
    else:
        model = load_weights_file(engine.model_from_record(run), weights_path)
    images, labels = split_images(info, split, run["image_size"], max_examples or None)
    logits = model.predict(images, batch_size=batch_size, verbose=0)
    onehot = keras.utils.to_categorical(labels, run["num_classes"])
    loss = float(keras.losses.CategoricalCrossentropy(from_logits=True)(onehot, logits))
    return {"top1": float(np.mean(logits.argmax(-1) == labels)), "loss": loss,
            "examples": len(labels), "split": split, "dataset": info.name}


def detection_split(info, split: str | None, max_examples: int) -> str:
    """The split a detector is evaluated on: ``split`` (default: the dataset's evaluation
    split), its first ``max_examples`` as a tfds slice (``validation[:N]``)."""
    split = split or info.catalogue.eval_split
    if max_examples:
        if "[" in split or "+" in split:
            raise ValueError(f"--max_examples takes the first examples of a plain split; "
                             f"--split={split} is a slice or sum already: slice it there.")
        split = f"{split}[:{min(max_examples, info.num_examples(split))}]"
    info.num_examples(split)  # a split the dataset does not have: one line, before the model
    return split


def _detection_info(dataset: str, data_dir, what: str):
    """The detection dataset ``dataset`` (``what``: the model, for the message)."""
    from keras_mobile import data as kdata

    info = kdata.dataset_info(dataset, data_dir)
    if info.task != "detection":
        raise ValueError(f"{what} is a detector; dataset {info.name!r} is a "
                         f"{info.task or 'non-detection'} dataset: pass a detection dataset "
                         f"(--dataset={DETECTION_DATASET}, coco/2017, ...).")
    return info


def evaluate_detector_run(run: dict, weights_path: str, dataset: str | None,
                          split: str | None, data_dir, batch_size: int | None,
                          max_examples: int) -> dict:
    """COCO metrics of a detector's training run (``run``: its ``run.json`` record):
    the float detector rebuilt from the record, or for a QAT run (``qat``) its
    quantization-aware twin (what the run trained and saved), with ``weights_path``."""
    from keras_mobile.detection import evaluation
    from keras_mobile.detection.training import detector_from_record
    from keras_mobile.weights import load_weights_file

    model_dir = os.path.dirname(weights_path)
    info = _detection_info(dataset or run["dataset"], data_dir, f"the run in {model_dir}")
    if info.num_classes != run["num_classes"]:
        raise ValueError(f"the model has {run['num_classes']} classes, dataset {info.name!r} "
                         f"has {info.num_classes}.")
    split = detection_split(info, split, max_examples)
    model = detector_from_record(run)
    if run.get("qat"):
        from keras_mobile.detection.quantize import quantize_detector

        model = load_weights_file(quantize_detector(model), weights_path)
    else:
        model = load_weights_file(model, weights_path)
    metrics = evaluation.evaluate(model, info, split, batch_size=batch_size or
                                  DETECTION_BATCH_SIZE)
    name = f"{run['model_kwargs']['detector']} over {run['model']}"
    return {**metrics, "examples": info.num_examples(split), "split": split,
            "dataset": info.name, "model": name + (" (QAT)" if run.get("qat") else ""),
            "weights": weights_path}


def evaluate_segmenter(run: dict | None, source: str, dataset: str, split: str | None,
                       data_dir, max_examples: int) -> dict:
    """Mean IoU, pixel accuracy and IoU per class of a segmenter: a training run
    (``run``: its ``run.json`` record; ``source``: its weights file; a QAT run is its
    quantization-aware twin) or a ``.tflite`` file (``run`` None, ``source`` its path)."""
    from keras_mobile import data as kdata
    from keras_mobile.segmentation import evaluation

    what = source if run is None else f"the run in {os.path.dirname(source)}"
    info = kdata.dataset_info(dataset, data_dir)
    if "segmentation" not in info.tasks:
        raise ValueError(f"{what} is a segmenter; dataset {info.name!r} is a {info.task} "
                         f"dataset: pass a dataset with class masks (--dataset).")
    info = info.for_task("segmentation")
    classes = run["num_classes"] if run is not None else _labels_count(source)
    if classes is not None and classes != info.num_classes:
        raise ValueError(f"the model has {classes} classes, dataset {info.name!r} has "
                         f"{info.num_classes}.")
    split = split or info.catalogue.eval_split
    info.num_examples(split)  # a split the dataset does not have: one line, before the model
    model = source
    if run is not None:
        from keras_mobile.segmentation.training import segmenter_from_record
        from keras_mobile.weights import load_weights_file

        model = segmenter_from_record(run)
        if run.get("qat"):
            from keras_mobile.segmentation.quantize import quantize_segmenter

            model = quantize_segmenter(model)
        model = load_weights_file(model, source)
    metrics = evaluation.evaluate(model, info, split, limit=max_examples or None)
    return {**metrics, "split": split, "dataset": info.name,
            "model": source if run is None else run["model_kwargs"]["segmenter"]
            + f" over {run['model']}" + (" (QAT)" if run.get("qat") else "")}


def _labels_count(path: str) -> int | None:
    labels = _labels(path)
    return None if labels is None else len(labels)


def tflite_kind(path: str) -> str:
    """"detector" (``TFLite_Detection_PostProcess``, the 4 outputs of the NMS form),
    "raw detector" (``export_detector(..., form="raw")``: box encodings ``[1, N, 4]`` and
    scores ``[1, N, C]``), "segmenter" (one ``[1, H, W, C]`` output at the input's size)
    or "classifier" (anything else), read from the flatbuffer."""
    from keras_mobile.detection.export import NMS_OUTPUTS, POSTPROCESS_OP, RAW_OUTPUTS
    from keras_mobile.tflite.inspect import parse_subgraph, read_model

    graph = parse_subgraph(read_model(path)[0], 0)
    outputs = [graph.tensors[i] for i in graph.outputs]
    if any(op.name == POSTPROCESS_OP for op in graph.ops):
        if len(outputs) != len(NMS_OUTPUTS):
            raise ValueError(f"{path} has a {POSTPROCESS_OP} op but {len(outputs)} outputs, not "
                             f"the {len(NMS_OUTPUTS)} of a detector's NMS form.")
        return "detector"
    if len(outputs) == len(RAW_OUTPUTS) and all(t.rank == 3 for t in outputs) and \
            outputs[0].shape[1] == outputs[1].shape[1] and \
            4 in (outputs[0].shape[-1], outputs[1].shape[-1]):
        return "raw detector"
    image = graph.tensors[graph.inputs[0]]
    if len(outputs) == 1 and outputs[0].rank == 4 and image.rank == 4 and \
            tuple(outputs[0].shape[1:3]) == tuple(image.shape[1:3]):
        return "segmenter"
    return "classifier"


def evaluate_detector_tflite(path: str, dataset: str, split: str | None, data_dir,
                             max_examples: int) -> dict:
    """COCO metrics of a detector ``.tflite`` file (NMS form) in LiteRT."""
    from keras_mobile.detection import evaluation

    info = _detection_info(dataset, data_dir, path)
    labels = _labels(path)
    if labels is not None and len(labels) != info.num_classes:
        raise ValueError(f"the model has {len(labels)} classes (its metadata's labels), "
                         f"dataset {info.name!r} has {info.num_classes}.")
    split = detection_split(info, split, max_examples)
    metrics = evaluation.evaluate(path, info, split)
    return {**metrics, "examples": info.num_examples(split), "split": split,
            "dataset": info.name, "model": path}


def _labels(path: str) -> list | None:
    """The class names in a ``.tflite`` file's metadata, or None (none, or no reader)."""
    try:
        from keras_mobile.tflite.metadata import read_metadata

        return read_metadata(path).get("labels")
    except ImportError:  # the metadata schema comes with mediapipe
        return None


def evaluate_tflite(path: str, dataset: str | None, split: str | None, data_dir,
                    max_examples: int) -> dict:
    from keras_mobile import data as kdata
    from keras_mobile.tflite import runtime
    from keras_mobile.tflite.runtime import check_model_file
    from keras_mobile.training.export import split_images, tflite_accuracy

    check_model_file(path, "--tflite")
    kind = tflite_kind(path)
    if kind == "raw detector":
        raise ValueError(f"{path} is a detector in the raw form (2 outputs: box encodings and "
                         "scores, NMS left to the client); COCO evaluation runs the NMS form: "
                         "export it with form='nms' (keras_mobile.detection.export_detector).")
    if kind == "detector":
        return evaluate_detector_tflite(path, dataset or DETECTION_DATASET, split, data_dir,
                                        max_examples)
    if kind == "segmenter":
        return evaluate_segmenter(None, path, dataset or DETECTION_DATASET, split, data_dir,
                                  max_examples)
    dataset = dataset or "keras_mobile_shapes"
    it = runtime.interpreter(path)
    (inp,) = it.get_input_details()
    (out,) = it.get_output_details()
    info = kdata.dataset_info(dataset, data_dir)
    if "classification" not in info.tasks:
        raise ValueError(f"{path} is a classifier (no TFLite_Detection_PostProcess op); dataset "
                         f"{info.name!r} is a {info.task} dataset: pass a classification "
                         "dataset (--dataset).")
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
            result = evaluate_tflite(FLAGS.tflite, FLAGS.dataset, FLAGS.split, FLAGS.data_dir,
                                     FLAGS.max_examples)
        else:
            result = evaluate_keras(FLAGS.model_dir, FLAGS.weights, FLAGS.dataset, FLAGS.split,
                                    FLAGS.data_dir, FLAGS.batch_size, FLAGS.max_examples,
                                    detection_batch_size=FLAGS.batch_size
                                    if FLAGS["batch_size"].present else None)
    except (ValueError, DatasetError) as error:
        fail(str(error))
    if "AP" in result:
        print_detection(result)
    else:
        print(json.dumps(result))


def print_detection(result: dict) -> None:
    """A detector's COCO metrics one per line, the machine and date, then all as JSON."""
    import datetime

    from keras_mobile.benchmark.host import machine
    from keras_mobile.detection.evaluation import METRICS

    result = {**result, "machine": machine(),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    print(f"COCO box metrics of {result['model']} on {result['dataset']} {result['split']} "
          f"({result['examples']} images):")
    for name in METRICS:
        value = result[name]
        print(f"  {name:<5} {'n/a' if value < 0 else f'{value:.4f}'}")
    print(f"{result['machine']} · {result['date']}")
    print(json.dumps(result))


def run():
    run_main(main)


if __name__ == "__main__":
    run()
