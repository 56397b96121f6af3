"""``scripts/evaluate.py`` on detectors: COCO AP of a detection run (its
``--model_dir``, float or QAT) and of a detector ``.tflite`` (NMS form, in LiteRT), each
the same numbers as :func:`keras_mobile.detection.evaluation.evaluate` in this process;
and the one-line refusal of a raw-form ``.tflite``.

The run is a real one of :func:`keras_mobile.detection.training.train`: one step of
SSDLite over MobileNetV2 alpha 0.35 at 320x320 (a registered backbone, so the CLI
rebuilds it from ``run.json``). It has learned next to nothing (AP about 0.001), which
does not matter: the CLI must measure the model it is given as the library does (and
an AP above 0 tells its weights from a fresh initialization's, whose AP is 0).
"""

import json
import os
import re
import subprocess
import sys
import time

import keras
import pytest

from keras_mobile import data
from keras_mobile.data import shapes_detection
from keras_mobile.detection import evaluation
from keras_mobile.detection import training as det_training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
NAME = shapes_detection.NAME
EXAMPLES = 16
SPLIT = f"validation[:{EXAMPLES}]"
RECORD = {"model": "MobileNetV2", "image_size": 320, "num_classes": 6,
          "model_kwargs": {"detector": "SSDLite", "backbone_kwargs": {"alpha": 0.35}}}


def _script(*args):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "evaluate.py"), *args],
                          capture_output=True, text=True, timeout=300, env=ENV, cwd=REPO)
    print(f"evaluate.py {' '.join(args)}: {time.perf_counter() - start:.1f} s")
    return proc


def _printed_metrics(proc) -> tuple[dict, dict]:
    """The metric lines (``  AP    0.1234``, ``n/a``: -1) and the closing JSON line."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    table = {}
    for line in lines:
        match = re.fullmatch(r"  (AP\w*)\s+(n/a|\d\.\d{4})", line)
        if match:
            table[match[1]] = -1.0 if match[2] == "n/a" else float(match[2])
    assert list(table) == list(evaluation.METRICS), proc.stdout
    assert " cores, " in lines[-2] and " UTC" in lines[-2], proc.stdout  # machine · date
    return table, json.loads(lines[-1])


def _assert_same(proc, expected: dict) -> dict:
    table, result = _printed_metrics(proc)
    for name in evaluation.METRICS:
        assert result[name] == pytest.approx(expected[name], abs=1e-6), (name, result, expected)
        assert table[name] == pytest.approx(expected[name], abs=5.1e-5), (name, table, expected)
    assert (result["examples"], result["split"], result["dataset"]) == (EXAMPLES, SPLIT, NAME)
    return result


@pytest.fixture(scope="module")
def data_dir(detection_data_dir):
    return detection_data_dir


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory):
    """A detection training run's model_dir: one step (~40 s), through the engine."""
    from keras_mobile.training import Recipe, TrainConfig

    keras.utils.set_random_seed(0)
    model = det_training.detector_from_record(RECORD)
    recipe = Recipe(source="test: one step", optimizer="adamw", learning_rate=1e-3,
                    reference_batch_size=16, batch_size=16, epochs=1, weight_decay=0.0,
                    label_smoothing=0.0)
    config = TrainConfig(model=RECORD["model"], recipe=recipe,
                         model_dir=str(tmp_path_factory.mktemp("run") / "ssd"), dataset=NAME,
                         data_dir=data_dir, train_split="train[:16]", eval_split=SPLIT,
                         max_steps=1, verbose=0, model_kwargs=RECORD["model_kwargs"])
    start = time.perf_counter()
    det_training.train(config, model, task=det_training.Detection.for_model(model,
                                                                            augment=False))
    print(f"trained 1 step in {time.perf_counter() - start:.1f} s")
    return config.model_dir


@pytest.fixture(scope="module")
def detector(run_dir):
    """The run's detector with its best weights, rebuilt from run.json as the CLI does."""
    with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as f:
        record = json.load(f)
    assert det_training.is_detection_record(record) and not record["qat"]
    model = det_training.detector_from_record(record)
    model.load_weights(os.path.join(run_dir, "best.weights.h5"))
    return model


def test_model_dir_prints_the_coco_metrics_of_the_run(run_dir, detector, data_dir):
    proc = _script(f"--model_dir={run_dir}", f"--data_dir={data_dir}",
                   f"--max_examples={EXAMPLES}")
    start = time.perf_counter()
    expected = evaluation.evaluate(detector, data.dataset_info(NAME, data_dir), SPLIT)
    print(f"in-process evaluation: {time.perf_counter() - start:.1f} s; {expected}")
    result = _assert_same(proc, expected)
    assert expected["AP50"] > 0, expected  # else the CLI's weights would go unchecked
    assert result["model"] == "SSDLite over MobileNetV2"
    assert result["weights"] == os.path.join(run_dir, "best.weights.h5")
    assert proc.stdout.startswith(f"COCO box metrics of SSDLite over MobileNetV2 on {NAME} "
                                  f"{SPLIT} ({EXAMPLES} images):"), proc.stdout


def test_tflite_detector_is_evaluated_in_litert(detector, data_dir, tmp_path):
    from keras_mobile.detection import export_detector

    path = str(tmp_path / "detector.tflite")
    start = time.perf_counter()
    export_detector(detector, path, labels=list(shapes_detection.CLASSES), check=False)
    print(f"exported in {time.perf_counter() - start:.1f} s")
    # No --dataset: a detector file defaults to the embedded detection dataset.
    proc = _script(f"--tflite={path}", f"--data_dir={data_dir}", f"--max_examples={EXAMPLES}")
    expected = evaluation.evaluate(path, data.dataset_info(NAME, data_dir), SPLIT)
    result = _assert_same(proc, expected)
    assert result["model"] == path
    assert expected["AP50"] >= 0  # a split with ground truth: AP is measured, not -1


def test_raw_form_detector_is_refused_in_one_line(detector, data_dir, tmp_path):
    from keras_mobile.detection import export_detector

    path = str(tmp_path / "raw.tflite")
    export_detector(detector, path, labels=list(shapes_detection.CLASSES), form="raw",
                    check=False)
    proc = _script(f"--tflite={path}", f"--data_dir={data_dir}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("evaluate.py: error: ") and path in last, last
    assert "raw form" in last and "export it with form='nms'" in last, last


@pytest.mark.slow
def test_qat_model_dir_loads_into_the_quantization_aware_twin(run_dir, detector, data_dir,
                                                               tmp_path):
    """A QAT run (<model_dir>/qat): its weights are the tf_keras twin's, saved after the
    calibration a fresh QAT run starts with; they load into a freshly built twin."""
    from keras_mobile.detection import quantize_detector
    from keras_mobile.quantization import calibrate

    info = data.dataset_info(NAME, data_dir)
    qat = quantize_detector(detector)
    task = det_training.Detection.for_model(detector)
    calibrate(qat, task.calibration_images(info, "train[:16]", 320, 16), 16)
    # The QAT run's model_dir as the engine writes it (one QAT step of training.train
    # here ends in non-finite weights): its record, and the twin's save_weights.
    path = str(tmp_path / "qat")
    os.makedirs(path)
    with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as f:
        record = json.load(f)
    with open(os.path.join(path, "run.json"), "w", encoding="utf-8") as f:
        json.dump({**record, "qat": True}, f)
    qat.save_weights(os.path.join(path, "best.weights.h5"))
    proc = _script(f"--model_dir={path}", f"--data_dir={data_dir}",
                   f"--max_examples={EXAMPLES}")
    result = _assert_same(proc, evaluation.evaluate(qat, info, SPLIT))
    assert result["model"] == "SSDLite over MobileNetV2 (QAT)"
