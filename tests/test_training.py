"""The training engine with real components: tfds data, checkpoints, a SIGKILL and
resume, MirroredStrategy over 2 logical CPUs, MultiWorkerMirroredStrategy with two
worker processes on localhost, and the main job's --smoke run end to end."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_mobile import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "train_worker.py")
TINY = dict(model="MobileNetV2", model_kwargs={"alpha": 0.35}, image_size=32,
            train_split="train[:64]", eval_split="validation[:32]", verbose=0)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
# An absl-py INFO line (I<mmdd> <hh:mm:ss.micro>); TensorFlow's C++ lines, I0000 00:00:<epoch
# seconds>, are not absl-py's (--verbosity does not reach them).
ABSL_INFO = re.compile(r"^I\d{4} \d\d:\d\d:\d\d\.\d{6} ", re.M)


def _recipe(**overrides):
    base = dict(batch_size=16, reference_batch_size=16, epochs=2, warmup_epochs=0)
    return training.MAIN_JOB.replace(**{**base, **overrides})


def _script(name, *args, timeout=600):
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *args],
                          capture_output=True, text=True, timeout=timeout, env=ENV, cwd=REPO)


def test_schedule_and_recipes():
    s = training.engine.WarmupSchedule(1.0, total_steps=110, warmup_steps=10, floor=0.1)
    values = [float(s(i)) for i in (0, 9, 10, 60, 110, 200)]
    np.testing.assert_allclose(values, [0.1, 1.0, 1.0, 0.55, 0.1, 0.1], atol=1e-6)
    e = training.engine.WarmupSchedule(1.0, 100, kind="exponential", decay_rate=0.5, decay_steps=10)
    np.testing.assert_allclose([float(e(i)) for i in (0, 9, 10, 25)], [1, 1, 0.5, 0.25])
    # mmseg's poly: lr * (1 - step / total) ** 0.9 (+ min_lr), per step.
    p = training.engine.WarmupSchedule(1.0, 100, kind="poly", power=0.9)
    np.testing.assert_allclose([float(p(i)) for i in (0, 50, 90, 100, 120)],
                               [1.0, 0.5 ** 0.9, 0.1 ** 0.9, 0.0, 0.0], atol=1e-6)
    deeplab = training.segmentation_recipe_for("DeepLabV3")
    assert (deeplab.optimizer, deeplab.learning_rate, deeplab.weight_decay, deeplab.schedule,
            deeplab.batch_size) == ("adamw", 1.2e-4, 0.01, "poly", 32)
    with pytest.raises(ValueError, match=r"segmenter must be one of \['DeepLabV3', 'PSPNet', "
                                         r"'LRASPP'\]. Received: segmenter='FCN'"):
        training.segmentation_recipe_for("FCN")
    emo = training.recipe_for("EMO1M")
    assert (emo.optimizer, emo.learning_rate, emo.batch_size, emo.weight_decay, emo.warmup_epochs,
            emo.ema_decay, emo.randaugment) == ("adamw", 6e-3, 2048, 0.05, 20, 0.9998,
                                                "rand-m9-mstd0.5-inc1")
    assert emo.scaled_learning_rate(512) == pytest.approx(1.5e-3)
    assert training.recipe_for("MobileNeXt").optimizer == "sgd"
    assert training.recipe_for("EfficientNetB0Sandglass").learning_rate == 0.12
    assert training.recipe_for("EfficientNetB3").optimizer == "rmsprop"
    with pytest.raises(ValueError, match="Unknown recipe fields"):
        emo.replace(lr=1)


def test_model_from_record_builds_the_trained_layout():
    """A stochastic-depth rate of 0 leaves EMO's DropPath layers out; the model rebuilt
    from run.json (the QAT export's) must match, or the QAT weights do not fit it."""
    import dataclasses

    recipe = training.MAIN_JOB.replace(drop_path_rate=0.0)
    config = training.TrainConfig(model="EMO1M", recipe=recipe, model_dir="unused", image_size=32)
    trained = training.engine.build_model(config, 10, 32)
    record = {"model": "EMO1M", "model_kwargs": {}, "num_classes": 10, "image_size": 32,
              "recipe": dataclasses.asdict(recipe)}
    rebuilt = training.engine.model_from_record(record)
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in trained.layers]
    default = training.engine.build_model(
        dataclasses.replace(config, recipe=training.MAIN_JOB.replace(drop_path_rate=None)), 10, 32)
    assert len(default.layers) > len(trained.layers)  # EMO1M's own drop_path_rate > 0


def test_train_checkpoints_resumes_and_exports(shapes_data_dir, tmp_path):
    config = training.TrainConfig(recipe=_recipe(ema_decay=0.9), model_dir=str(tmp_path),
                                  data_dir=shapes_data_dir, checkpoint_every=3, **TINY)
    result = training.train(config)
    assert result.steps == 8 and result.resumed_from_step == 0
    assert [h["epoch"] for h in result.history] == [0, 1]
    assert all(0 <= h["val_accuracy"] <= 1 and np.isfinite(h["loss"]) for h in result.history)
    files = set(os.listdir(tmp_path))
    assert {"run.json", "history.json", "best.weights.h5", "final.weights.h5", "checkpoint",
            "train", "validation"} <= files
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-8")
    # The same command again: nothing left to do, same weights (EMA ones) back.
    again = training.train(config)
    assert again.resumed_from_step == 8 and again.steps == 8
    for a, b in zip(result.model.get_weights(), again.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # A longer run in the same model_dir continues from step 8 with the optimizer state.
    longer = training.train(config.__class__(**{**config.__dict__,
                                               "recipe": _recipe(ema_decay=0.9, epochs=3)}))
    assert longer.resumed_from_step == 8 and longer.steps == 12
    assert [h["epoch"] for h in longer.history] == [0, 1, 2]


def test_resumed_run_equals_uninterrupted_run(shapes_data_dir, tmp_path):
    """Stop at step 5 (mid-epoch, after a checkpoint at 4), resume: same weights as
    one uninterrupted run, because data order and augmentation are seeded by position."""
    recipe = _recipe(randaugment="rand-m9-mstd0.5-inc1")
    full = training.train(training.TrainConfig(recipe=recipe, model_dir=str(tmp_path / "a"),
                                               data_dir=shapes_data_dir, **TINY))
    cut = dict(recipe=recipe, model_dir=str(tmp_path / "b"), data_dir=shapes_data_dir,
               checkpoint_every=2, **TINY)
    training.train(training.TrainConfig(max_steps=5, **cut))
    resumed = training.train(training.TrainConfig(**cut))
    assert resumed.resumed_from_step == 5 and resumed.steps == 8
    for a, b in zip(full.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bad_configs_fail_before_any_work(shapes_data_dir, tmp_path):
    def config(**kw):
        args = dict(recipe=_recipe(), model_dir=str(tmp_path / "run"), data_dir=shapes_data_dir,
                    **TINY)
        return training.TrainConfig(**{**args, **kw})

    cases = [
        (dict(model="EMO3M"), "EMO3M"),
        (dict(dataset="imagenet2013"), "dataset must be one of"),
        (dict(strategy="horovod"), "strategy must be one of"),
        (dict(tpu="v3-8"), "needs strategy=tpu"),
        (dict(strategy="tpu"), "strategy=tpu needs --tpu"),
        (dict(strategy="multi_worker"), "TF_CONFIG"),
        (dict(mixed_precision="float8"), "mixed_precision must be one of"),
        (dict(recipe=_recipe(batch_size=0)), "batch_size must be a positive integer"),
        (dict(recipe=_recipe(optimizer="adam")), "optimizer must be"),
        (dict(recipe=_recipe(randaugment="autoaugment")), "randaugment must look like"),
        (dict(recipe=_recipe(batch_size=10_000)), "exceeds the 64 examples"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            training.train(config(**kwargs))
    assert not os.path.exists(tmp_path / "run")
    # A model_dir holding another run is refused and left as it was.
    os.makedirs(tmp_path / "other")
    run = {"model": "EMO1M", "model_kwargs": {}, "dataset": "keras_mobile_shapes",
           "image_size": 32, "num_classes": 10}
    (tmp_path / "other" / "run.json").write_text(json.dumps(run))
    with pytest.raises(ValueError, match="holds a different run"):
        training.train(config(model_dir=str(tmp_path / "other")))
    # Nothing written but the lock file (training/checkpoints.py) of the refused run.
    assert sorted(os.listdir(tmp_path / "other")) == [".lock", "run.json"]


def test_script_errors_are_one_line(shapes_data_dir, tmp_path):
    cases = [
        (["--model=EMO3M"], "EMO3M"),
        (["--strategy=mirrored", "--cpu_devices=2", "--batch_size=3"],
         "batch_size=3 is not divisible by the 2 replicas"),
        (["--dataset=cifar10"], "tfds build cifar10"),
        (["--tpu=v3-8"], "needs strategy=tpu"),
        (["--export=int4"], "--export takes"),
    ]
    for args, message in cases:
        proc = _script("train.py", f"--data_dir={shapes_data_dir}",
                       f"--model_dir={tmp_path / 'run'}", "--smoke", *args, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and message in lines[-1], (args, proc.stderr[-2000:])
        assert lines[-1].startswith("train.py: error: ") and "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "run")


def _worker_weights(path):
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files) - 2)], int(f["steps"])


def _distance(a, b):
    assert len(a) == len(b)
    return float(np.sqrt(sum(np.sum((x - y) ** 2) for x, y in zip(a, b, strict=True))))


def _assert_matches_single_process(weights, single):
    """The distributed run's 4-step update (float64; BN statistics included) equals the
    single-process one to rounding: measured 1e-13 of the update on 2026-11-21."""
    expected, update = single
    assert update > 1
    assert _distance(weights, expected) <= 1e-9 * update, (_distance(weights, expected), update)


@pytest.fixture(scope="module")
def single_process_weights(shapes_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    proc = subprocess.run([sys.executable, WORKER, shapes_data_dir, str(out / "run"), "default",
                           "1", str(out / "w.npz")], capture_output=True, text=True, env=ENV,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    weights, steps = _worker_weights(out / "w.npz")
    assert steps == 4
    return weights, float(np.load(out / "w.npz")["update"])


def test_mirrored_strategy_on_two_logical_cpus(shapes_data_dir, single_process_weights, tmp_path):
    proc = subprocess.run([sys.executable, WORKER, shapes_data_dir, str(tmp_path / "run"),
                           "mirrored", "2", str(tmp_path / "w.npz")], capture_output=True,
                          text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    weights, steps = _worker_weights(tmp_path / "w.npz")
    assert steps == 4
    _assert_matches_single_process(weights, single_process_weights)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_strategy_two_processes(shapes_data_dir, single_process_weights, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, WORKER, shapes_data_dir, str(tmp_path / "run"), "multi_worker", "1",
             str(tmp_path / f"w{index}.npz"), "qat"],
            env={**ENV, "TF_CONFIG": json.dumps(tf_config)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-3000:]
    (w0, s0), (w1, s1) = (_worker_weights(tmp_path / f"w{i}.npz") for i in range(2))
    assert s0 == s1 == 4
    assert _distance(w0, w1) == 0  # identical on both workers
    _assert_matches_single_process(w0, single_process_weights)
    # Only the chief (worker 0) keeps checkpoints and weights; worker 1's copies are gone.
    kept = os.listdir(tmp_path / "run")
    assert "final.weights.h5" in kept and not [k for k in kept if k.startswith(".worker")]
    # Then QAT on the same cluster (tf_keras BatchNorm statistics are read collectively,
    # so every worker saves): identical on both workers, its ranges calibrated.
    q0, q1 = (dict(np.load(tmp_path / f"w{i}_qat.npz")) for i in range(2))
    assert q0.keys() == q1.keys() and int(q0.pop("steps")) == 4
    assert all(np.array_equal(q0[k], q1[k]) for k in q0)
    low, high = q0["quant_rescaling/output_min:0"], q0["quant_rescaling/output_max:0"]
    assert -1.05 < low < -0.95 and 0.95 < high < 1.05, (low, high)  # images / 127.5 - 1
    kept = os.listdir(tmp_path / "run" / "qat")
    assert "final.weights.h5" in kept and not [k for k in kept if k.startswith(".worker")]


def test_sigkill_then_resume(shapes_data_dir, tmp_path):
    """SIGKILL the main-job script after its first checkpoint; the same command resumes."""
    model_dir = tmp_path / "run"
    args = [sys.executable, os.path.join(REPO, "scripts", "train.py"), "--smoke",
            f"--data_dir={shapes_data_dir}", f"--model_dir={model_dir}", "--epochs=3",
            "--checkpoint_every=1", "--export=", "--noqat", "--verbose=2"]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=REPO)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        latest = tf.train.latest_checkpoint(str(model_dir))
        if latest and int(latest.rsplit("-", 1)[1]) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = int(tf.train.latest_checkpoint(str(model_dir)).rsplit("-", 1)[1])
    assert 2 <= killed_at < 12
    done = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Resumed from step {killed_at}" in done.stdout
    history = json.loads((model_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2] and history[-1]["step"] == 12
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-12")
    assert not [f for f in os.listdir(model_dir) if f.startswith(".") and "tmp" in f]


def test_main_job_smoke_end_to_end(shapes_data_dir, tmp_path):
    model_dir = tmp_path / "main"
    proc = _script("train.py", "--smoke", f"--data_dir={shapes_data_dir}",
                   f"--model_dir={model_dir}", "--verbose=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The CLIs log at WARNING unless --verbosity is given (keras_mobile.cli.parse_flags).
    assert not ABSL_INFO.search(proc.stdout) and not ABSL_INFO.search(proc.stderr), \
        ABSL_INFO.findall(proc.stderr)[:3]
    files = set(os.listdir(model_dir))
    assert {"report.md", "curves.png", "model_float32.tflite", "model_int8.tflite",
            "model_qat_int8.tflite", "best.weights.h5", "qat"} <= files
    report = (model_dir / "report.md").read_text()
    assert "| Epoch | Train loss" in report and "| float32 | model_float32.tflite" in report
    assert "| int8 | model_int8.tflite" in report and "not run" not in report
    # The QAT stage: its own checkpoints and history, one epoch in the table, and an
    # int8 model in one XNNPACK partition whose only float ops are the softmax head's
    # (DEQUANTIZE, SOFTMAX, QUANTIZE to the uint8 output; the last two columns of its row).
    assert tf.train.latest_checkpoint(str(model_dir / "qat")).endswith("ckpt-4")
    assert "| QAT 1 |" in report
    (qat_row,) = [line for line in report.splitlines() if line.startswith("| qat_int8 |")]
    assert qat_row.split("|")[2].strip() == "model_qat_int8.tflite" and \
        qat_row.endswith("| 1 | 3 |"), qat_row
    from keras_mobile import tflite

    assert [name for _, name in tflite.inspect(str(model_dir / "model_qat_int8.tflite"))
            .float_ops] == ["DEQUANTIZE", "SOFTMAX", "QUANTIZE"]
    # The QAT ranges were calibrated before the fine-tune: the input scaling's output
    # spans [-1, 1] (tfmot's [-6, 6] start would still be about [-5.98, 5.98] after 4 steps).
    from keras_mobile.tflite import runtime

    it = runtime.interpreter(str(model_dir / "model_qat_int8.tflite"))
    (scaled,) = [t for t in it.get_tensor_details() if t["name"].endswith("quant_rescaling/add")]
    scale, zero_point = scaled["quantization"]
    low, high = scale * (-128 - zero_point), scale * (127 - zero_point)
    assert -1.05 < low < -0.95 and 0.95 < high < 1.05, (low, high)
    # evaluate.py agrees with itself across Keras and LiteRT float32 (same weights).
    keras_eval = _script("evaluate.py", f"--model_dir={model_dir}", f"--data_dir={shapes_data_dir}",
                         "--split=validation[:32]")
    lite_eval = _script("evaluate.py", f"--tflite={model_dir / 'model_float32.tflite'}",
                        f"--data_dir={shapes_data_dir}", "--split=validation[:32]",
                        "--verbosity=0")
    assert keras_eval.returncode == 0 and lite_eval.returncode == 0, keras_eval.stderr[-2000:]
    assert not ABSL_INFO.search(keras_eval.stderr) and ABSL_INFO.search(lite_eval.stderr)
    k, lite = (json.loads(p.stdout.strip().splitlines()[-1]) for p in (keras_eval, lite_eval))
    assert k["examples"] == lite["examples"] == 32
    assert abs(k["top1"] - lite["top1"]) <= 1 / 32  # float32 TFLite: at most one flip
    best = max(json.loads((model_dir / "history.json").read_text()),
               key=lambda h: h["val_accuracy"])
    assert k["top1"] == pytest.approx(best["val_accuracy"])


def test_window_attention_softmax_is_float32_under_mixed_precision():
    import keras

    from keras_mobile.layers import WindowAttention

    layer = WindowAttention(num_heads=2, window_size=2, dtype="mixed_float16")
    qk = tf.random.stateless_normal((1, 4, 4, 8), (1, 2), dtype=tf.float16)
    value = tf.random.stateless_normal((1, 4, 4, 4), (3, 4), dtype=tf.float16)
    graph = tf.function(layer).get_concrete_function([qk, value]).graph
    softmax = [op for op in graph.get_operations() if op.type == "Softmax"]
    assert [op.get_attr("T") for op in softmax] == [tf.float32]
    expected = WindowAttention(num_heads=2, window_size=2)(
        [tf.cast(qk, tf.float32), tf.cast(value, tf.float32)])
    actual = layer([qk, value])
    assert actual.dtype == tf.float16 and keras.ops.max(
        keras.ops.abs(tf.cast(actual, tf.float32) - expected)) < 1e-2
