"""Segmentation training: the loss and the metrics against their definitions, a tiny
segmenter that learns the embedded masks through the shared engine, QAT and int8 files
whose mIoU in LiteRT stays close to Keras', and the command line."""

import dataclasses
import json
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import run_script

import keras_mobile
from keras_mobile import data
from keras_mobile.segmentation import evaluation
from keras_mobile.segmentation import training as seg_training
from keras_mobile.segmentation.data import evaluation_examples

NAME = "keras_mobile_shapes_detection"
VALIDATION = "validation[:128]"


# --- loss and metrics ------------------------------------------------------------------------

def _numpy_ce(labels, logits):
    """mmseg 0.x CrossEntropyLoss(ignore_index=255): mean over every pixel, 0 on ignored."""
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid = labels != 255
    ce = -np.take_along_axis(log_p, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    return np.where(valid, ce, 0).mean(axis=(1, 2))


def test_loss_is_mmsegs_cross_entropy_with_the_auxiliary_weight():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (2, 6, 5))
    labels[0, :2] = 255
    logits, aux = rng.normal(size=(2, 2, 6, 5, 4)).astype(np.float32)
    task = seg_training.Segmentation(4)
    # The engine hands labels over as floats.
    loss = task.loss(labels.astype(np.float32), {"logits": logits, "aux_logits": aux})
    np.testing.assert_allclose(loss, _numpy_ce(labels, logits) + 0.4 * _numpy_ce(labels, aux),
                               rtol=1e-5)
    np.testing.assert_allclose(task.loss(labels, {"logits": logits}), _numpy_ce(labels, logits),
                               rtol=1e-5)


def test_miou_and_pixel_accuracy_known_values():
    labels = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    predicted = np.array([[0, 1, 1, 1], [2, 0, 0, 2]])
    intersection, union, correct, valid = evaluation.confusion(predicted, labels, 4)
    np.testing.assert_array_equal(intersection, [1, 2, 1, 0])
    np.testing.assert_array_equal(union, [3, 3, 2, 0])  # class 3: absent from both
    metrics = seg_training.segmentation_metrics(intersection, union, correct, valid)
    assert metrics["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert metrics["pixel_accuracy"] == pytest.approx(4 / 6)
    assert metrics["iou"][3] is None
    # The engine's in-graph sums agree, and weight-0 (padding) examples count nowhere.
    logits = np.eye(4, dtype=np.float32)[predicted][None]
    sums = seg_training.confusion_sums(labels[None], logits, 4, tf.constant([1.0]))
    for got, want in zip(sums, (intersection, union, correct, valid), strict=True):
        np.testing.assert_allclose(got, want)
    padded = seg_training.confusion_sums(np.stack([labels, labels]), np.concatenate(
        [logits, logits]), 4, tf.constant([1.0, 0.0]))
    for got, want in zip(padded, sums, strict=True):
        np.testing.assert_allclose(got, want)
    with pytest.raises(ValueError, match="labels hold class 5 but the model has 4 classes"):
        evaluation.confusion(predicted, np.full((2, 4), 5), 4)


# --- a tiny segmenter learns ------------------------------------------------------------------

def _tiny_segmenter():
    """LR-ASPP on MobileNetV3Small alpha 0.35 at 128 px (output stride 16)."""
    backbone = keras_mobile.MobileNetV3Small(include_top=False, weights=None,
                                             input_shape=(128, 128, 3), alpha=0.35)
    return keras_mobile.segmentation.LRASPP(backbone, num_classes=7, backbone_weights=None)


@pytest.fixture(scope="module")
def trained(detection_data_dir, tmp_path_factory):
    """The tiny segmenter before and after 2 epochs of 2,048 images through the engine."""
    from keras_mobile.training import TrainConfig

    keras.utils.set_random_seed(0)
    info = data.dataset_info(NAME, detection_data_dir, task="segmentation")
    model = _tiny_segmenter()
    untrained = evaluation.evaluate(model, info, VALIDATION)
    recipe = keras_mobile.training.SEGMENTATION_MAIN_JOB.replace(epochs=2)
    config = TrainConfig(model="MobileNetV3Small", recipe=recipe,
                         model_dir=str(tmp_path_factory.mktemp("run")), dataset=NAME,
                         data_dir=detection_data_dir, train_split="train[:2048]",
                         eval_split=VALIDATION, verbose=0,
                         model_kwargs={"segmenter": "LRASPP", "backbone_kwargs": {"alpha": 0.35},
                                       "segmenter_kwargs": {}})
    start = time.perf_counter()
    result = seg_training.train(config, model)
    seconds = time.perf_counter() - start
    trained_metrics = evaluation.evaluate(result.model, info, VALIDATION)
    report = dict(untrained=untrained, trained=trained_metrics, train_seconds=seconds,
                  history=[{k: h[k] for k in ("val_loss", "val_miou", "val_pixel_accuracy")}
                           for h in result.history])
    print(json.dumps(report, indent=1))
    return dict(model=model, result=result, config=config, info=info, report=report)


def test_tiny_segmenter_learns_the_embedded_masks(trained):
    result, report = trained["result"], trained["report"]
    assert [h["epoch"] for h in result.history] == [0, 1]
    assert result.record["num_classes"] == 7
    # The untrained model scores 0.013 (measured), predicting every pixel background would
    # score 0.123 (86% of the pixels); 2 short epochs reach 0.142 (the learning curve of the
    # main job's 8 epochs: docs/segmentation.md). The bound has slack: mIoU is noisy.
    assert report["untrained"]["miou"] < 0.05
    assert report["trained"]["miou"] > 0.13, report
    assert report["trained"]["pixel_accuracy"] > 0.85, report
    # The engine's validation pass and the evaluation module count the same pixels.
    assert result.history[-1]["val_miou"] == pytest.approx(report["trained"]["miou"], abs=1e-6)
    rebuilt = seg_training.trained_segmenter(result)
    images = evaluation_examples(trained["info"], VALIDATION, 128, 4)[0]
    np.testing.assert_array_equal(rebuilt.predict_masks(images),
                                  result.model.predict_masks(images))



def test_quantization_aware_fine_tune_and_int8_files_keep_the_miou(trained, tmp_path):
    """--qat for segmenters: the float weights fine-tuned as the tfmot twin through the same
    engine (1 epoch of 256 images), exported to a full-integer file whose mIoU in LiteRT
    stays close to its Keras model's; post-training int8 and float32 of the float model."""
    info, float_metrics = trained["info"], trained["report"]["trained"]
    config = dataclasses.replace(trained["config"], qat=True, train_split="train[:256]",
                                 model_dir=str(tmp_path / "qat"),
                                 recipe=trained["config"].recipe.qat())
    with pytest.raises(ValueError, match="pass its init_weights"):
        seg_training.train(config, trained["model"])
    result = seg_training.train(config, trained["model"], trained["result"].weights)
    qat = result.model
    assert isinstance(qat, keras_mobile.segmentation.quantize.QuantizedSegmenter)
    assert result.record["qat"] is True
    qat_metrics = evaluation.evaluate(qat, info, VALIDATION)
    images = evaluation_examples(info, "train[:256]", 128, 64)[0]
    labels = list(info.class_names)
    files, partitions = {}, {}
    for mode, model in (("float32", trained["result"].model), ("int8", trained["result"].model),
                        ("qat_int8", qat)):
        report = keras_mobile.export.export(model, str(tmp_path / f"{mode}.tflite"), mode=mode,
                                            representative_data=images,
                                            metadata={"labels": labels})
        inspection = keras_mobile.tflite.inspect(report.path)
        assert inspection.max_rank <= 4 and not inspection.dynamic_tensors
        if mode != "float32":
            assert inspection.float_ops == [], inspection.float_ops  # an int8 body
        files[mode] = evaluation.evaluate(report.path, info, VALIDATION)
        partitions[mode] = report.xnnpack_partitions
    print(json.dumps({"float": float_metrics["miou"], "qat_keras": qat_metrics["miou"],
                      "files": {k: v["miou"] for k, v in files.items()},
                      "partitions": partitions}, indent=1))
    assert partitions == {"float32": 1, "int8": 1, "qat_int8": 1}
    assert files["float32"]["miou"] == pytest.approx(float_metrics["miou"], abs=0.002)
    # Within 2 points of their Keras models (measured: see the printout).
    assert files["int8"]["miou"] > float_metrics["miou"] - 0.02, files
    assert files["qat_int8"]["miou"] == pytest.approx(qat_metrics["miou"], abs=0.02), files

# --- the command line ------------------------------------------------------------------------

def test_train_cli_segmentation_smoke(detection_data_dir, tmp_path):
    """``scripts/train.py --task=segmentation --smoke``: LR-ASPP on the default backbone,
    QAT, a float32 MediaPipe file and its benchmark row, the report with the masks; the
    rerun resumes (nothing left to train); evaluate.py reads the run and the file."""
    model_dir = tmp_path / "run"
    args = ("--task=segmentation", "--smoke", "--export=float32",
            f"--data_dir={detection_data_dir}", f"--model_dir={model_dir}", "--verbose=0")
    proc = run_script("train.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((model_dir / "run.json").read_text())
    assert (run["model"], run["model_kwargs"]) == (
        "MobileNetV3Small", {"segmenter": "LRASPP", "backbone_kwargs": {"alpha": 0.75},
                             "segmenter_kwargs": {}})
    assert (run["image_size"], run["num_classes"]) == (64, 7)
    assert json.loads((model_dir / "qat" / "run.json").read_text())["qat"] is True
    report = (model_dir / "report.md").read_text()
    assert "# Training report: LRASPP on MobileNetV3Small" in report
    assert "| qat_int8 |" in report and "| float32 | segmenter_float32.tflite |" in report
    assert "![predicted masks](masks.png)" in report
    assert (model_dir / "masks.png").stat().st_size > 10_000
    exports = {e["mode"]: e for e in json.loads((model_dir / "exports.json").read_text())}
    assert set(exports) == {"float32", "qat_int8"}
    assert exports["float32"]["error"] is None and exports["float32"]["xnnpack_partitions"] == 1
    assert set(exports["float32"]["metrics"]) == {"miou", "pixel_accuracy", "iou", "images"}
    rows = json.loads((model_dir / "benchmark" / "results.json").read_text())["results"]
    assert rows[0]["mode"] == "float32" and rows[0]["extra"]["task"] == "segmentation"
    assert rows[0]["extra"]["seg_miou"] == exports["float32"]["metrics"]["miou"]
    again = run_script("train.py", *args, "--export=", "--nobenchmark")
    assert again.returncode == 0, again.stderr[-3000:]
    history = json.loads((model_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]  # resumed at the end: no epoch added
    # evaluate.py: the run (Keras) and its float32 file (LiteRT) give the same mIoU.
    keras_run = run_script("evaluate.py", f"--model_dir={model_dir}", "--weights=final",
                           f"--data_dir={detection_data_dir}", "--split=validation[:32]")
    assert keras_run.returncode == 0, keras_run.stderr[-3000:]
    lite = run_script("evaluate.py", f"--tflite={model_dir / 'segmenter_float32.tflite'}",
                      f"--data_dir={detection_data_dir}", "--split=validation[:32]")
    assert lite.returncode == 0, lite.stderr[-3000:]
    keras_miou = json.loads(keras_run.stdout.strip().splitlines()[-1])["miou"]
    lite_miou = json.loads(lite.stdout.strip().splitlines()[-1])["miou"]
    assert lite_miou == pytest.approx(keras_miou, abs=0.01)


def test_segmentation_on_a_classification_dataset_is_one_line(shapes_data_dir, tmp_path):
    proc = run_script("train.py", "--task=segmentation", "--smoke",
                      "--dataset=keras_mobile_shapes", f"--data_dir={shapes_data_dir}",
                      f"--model_dir={tmp_path / 'r'}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "train.py: error: dataset 'keras_mobile_shapes' is a classification dataset "
        "(label); train it with --task=classification, not segmentation.")
