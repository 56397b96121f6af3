"""A careless user's mistakes, with real files and real CLI processes: each is one line
naming the file or flag (``<script>.py: error: ...``, exit code 1, no traceback), given
before any long work (building, converting, loading a dataset, timing)."""

import os
import subprocess
import sys
import warnings

import flatbuffers
import pytest

import keras_mobile
from keras_mobile import tflite
from keras_mobile.benchmark import host
from keras_mobile.files import check_output_path
from keras_mobile.tflite import runtime
from keras_mobile.tflite.inspect import read_model, schema
from keras_mobile.weights import check_weights_file, load_weights_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
RUN = ('{"model": "MobileNetV2", "model_kwargs": {"alpha": 0.35}, "dataset": '
       '"keras_mobile_shapes", "image_size": 32, "num_classes": 10}')


def _tiny_v2():
    return keras_mobile.MobileNetV2(weights=None, alpha=0.35, input_shape=(32, 32, 3),
                                    classes=10)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Real files: Keras weights of a tiny MobileNetV2, the same truncated, a tiny
    MobileNet V1's weights, a converted .tflite and the same truncated."""
    root = tmp_path_factory.mktemp("cli_errors")
    model = _tiny_v2()
    good = str(root / "good.weights.h5")
    model.save_weights(good)
    data = open(good, "rb").read()
    corrupt = root / "corrupt.weights.h5"
    corrupt.write_bytes(data[:len(data) // 2])
    v1 = str(root / "v1.weights.h5")
    keras_mobile.MobileNet(weights=None, alpha=0.25, input_shape=(32, 32, 3),
                           classes=10).save_weights(v1)
    graph = str(root / "good.tflite")
    tflite.convert(model, graph, check=False)
    flatbuffer = open(graph, "rb").read()
    truncated = root / "truncated.tflite"
    truncated.write_bytes(flatbuffer[:len(flatbuffer) // 2])
    return {"root": root, "good": good, "corrupt": str(corrupt), "v1": v1, "graph": graph,
            "truncated": str(truncated)}


def _script(name, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *args],
                          capture_output=True, text=True, timeout=300, env=ENV, cwd=REPO)


def _assert_one_line(proc, script, *names):
    """Exit code 1, a short stderr without a traceback, whose last line is the error
    and names each of ``names``."""
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr) < 2000, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{script}: error: "), proc.stderr
    for name in names:
        assert name in last, (name, last)
    return last


# ---- the CLIs, one process per case -------------------------------------------------------


def test_evaluate_corrupt_weights_is_named_before_the_dataset(files, tmp_path):
    (tmp_path / "run.json").write_text(RUN)
    best = tmp_path / "best.weights.h5"
    best.write_bytes(open(files["corrupt"], "rb").read())
    # No --data_dir: the embedded dataset would be prepared first (seconds) were the
    # weights not checked before it; the message comes before any of that.
    proc = _script("evaluate.py", f"--model_dir={tmp_path}", f"--data_dir={tmp_path / 'tfds'}")
    last = _assert_one_line(proc, "evaluate.py", str(best), "is not a readable Keras weights file",
                            "truncated file")
    assert not os.path.exists(tmp_path / "tfds"), last


def test_evaluate_model_dir_without_run_json(tmp_path):
    proc = _script("evaluate.py", f"--model_dir={tmp_path}")
    _assert_one_line(proc, "evaluate.py", str(tmp_path), "no run.json")


def test_convert_corrupt_weights_in_a_model_dir(files, tmp_path):
    best = tmp_path / "best.weights.h5"
    best.write_bytes(open(files["corrupt"], "rb").read())
    out = tmp_path / "m.tflite"
    proc = _script("convert.py", "--model=MobileNetV2", "--smoke", f"--weights={tmp_path}",
                   f"--output={out}")
    _assert_one_line(proc, "convert.py", "--weights", str(best),
                     "is not a readable Keras weights file")
    assert not out.exists()


def test_convert_weights_of_another_model_names_the_layer(files, tmp_path):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"a good file from before")
    proc = _script("convert.py", "--model=MobileNetV2", "--smoke", f"--weights={files['v1']}",
                   f"--output={out}")
    last = _assert_one_line(proc, "convert.py", files["v1"], "does not fit model",
                            "first mismatching layer 'stem_conv'")
    assert "UserWarning" not in proc.stderr and len(last) < 500
    assert out.read_bytes() == b"a good file from before"  # left as it was


def test_convert_output_directory_is_refused_before_converting(tmp_path):
    proc = _script("convert.py", "--model=MobileNetV2", "--smoke", f"--output={tmp_path}")
    _assert_one_line(proc, "convert.py", f"--output={tmp_path}", "is an existing directory")
    assert os.listdir(tmp_path) == [] and proc.stdout == ""


def test_convert_missing_weights_file(tmp_path):
    missing = str(tmp_path / "missing.weights.h5")
    proc = _script("convert.py", "--model=MobileNetV2", "--smoke", f"--weights={missing}",
                   f"--output={tmp_path / 'm.tflite'}")
    _assert_one_line(proc, "convert.py", "--weights", missing, "does not exist")


def test_benchmark_truncated_tflite(files):
    proc = _script("benchmark.py", f"--graph={files['truncated']}", "--num_runs=1",
                   "--warmup_runs=0")
    _assert_one_line(proc, "benchmark.py", files["truncated"], "is not a valid .tflite model",
                     "truncated or corrupt")


@pytest.mark.parametrize("args, names", [
    (["--task=detection", "--model=EMO1M"], ["--model must be a detector", "'EMO1M'"]),
    (["--backbone=EMO1M"], ["--backbone needs --task=detection"]),
    (["--task=detection", "--backbone=EMO9M"], ["'EMO9M'", "EMO1M"]),
    (["--task=segmentation", "--model=SSDLite"],
     ["--model must be a segmenter, one of ['DeepLabV3', 'PSPNet', 'LRASPP']", "'SSDLite'"]),
    (["--output_stride=16"], ["--output_stride needs --task=segmentation"]),
])
def test_train_detection_flags(tmp_path, args, names):
    data_dir = tmp_path / "tfds"
    proc = _script("train.py", *args, f"--data_dir={data_dir}",
                   f"--model_dir={tmp_path / 'run'}")
    _assert_one_line(proc, "train.py", *names)
    assert not data_dir.exists() and not (tmp_path / "run").exists()


# ---- the checks behind them, in process -----------------------------------------------------


def test_weights_file_checks(files, tmp_path):
    with pytest.raises(ValueError, match=r"corrupt.weights.h5 is not a readable Keras weights "
                                         r"file \(truncated file: eof = \d+"):
        check_weights_file(files["corrupt"])
    with pytest.raises(FileNotFoundError, match="missing.h5' does not exist"):
        check_weights_file(str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="is a directory"):
        check_weights_file(str(tmp_path))
    with pytest.raises(ValueError, match=r"good.tflite is not a readable Keras weights file "
                                         r"\(file signature not found\)"):
        check_weights_file(files["graph"])
    assert check_weights_file(files["good"]) == files["good"]
    # The builders' loader is the same: a corrupt file fails naming it.
    with pytest.raises(ValueError, match="corrupt.weights.h5 is not a readable"):
        keras_mobile.MobileNetV2(weights=files["corrupt"], alpha=0.35, input_shape=(32, 32, 3),
                                 classes=10)


def test_weights_of_another_model_one_line_no_warnings(files):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError) as info:
            load_weights_file(_tiny_v2(), files["v1"])
    message = str(info.value)
    assert "\n" not in message and len(message) < 500, message
    assert "first mismatching layer 'stem_conv': 'stem_conv/kernel' has shape (3, 3, 3, 8) " \
           "in the file and (3, 3, 3, 16) in the model" in message
    assert not caught, [str(w.message)[:100] for w in caught[:3]]
    model = load_weights_file(_tiny_v2(), files["good"])  # the right file still loads
    assert model.name.startswith("mobilenetv2")


def test_check_output_path(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="--output=.* is an existing directory"):
        check_output_path(str(tmp_path), "--output")
    with pytest.raises(ValueError, match="--output must end with .tflite"):
        check_output_path(str(tmp_path / "m.h5"), "--output", suffix=".tflite")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        check_output_path(str(tmp_path / "file" / "m.tflite"), "--output")
    new = str(tmp_path / "new" / "deeper" / "m.tflite")
    assert check_output_path(new, suffix=".tflite") == new  # folders are created on write


def _with_custom_op(graph, path):
    """``graph`` with its first operator replaced by an unknown custom op: a valid
    flatbuffer that LiteRT cannot run."""
    model, _ = read_model(graph)
    code = model.operatorCodes[0]
    code.builtinCode = code.deprecatedBuiltinCode = schema().BuiltinOperator.CUSTOM
    code.customCode = "KerasMobileUnknownOp"
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return str(path)


def test_benchmark_graph_checks_and_child_failure(files, tmp_path):
    with pytest.raises(ValueError, match=r"truncated.tflite is not a valid .tflite model "
                                         r"\(truncated or corrupt: "):
        host.run(files["truncated"])
    assert runtime.check_model_file(files["graph"]) == files["graph"]
    # A failure inside the child process surfaces as one line naming the graph.
    custom = _with_custom_op(files["graph"], tmp_path / "custom.tflite")
    with pytest.raises(host.BenchmarkError) as info:
        host.run_many([files["graph"], custom], num_runs=1, warmup_runs=0, rounds=1)
    message = str(info.value)
    assert "\n" not in message and f"{custom}: RuntimeError: " in message, message
    assert "KerasMobileUnknownOp" in message


LINE_BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
               "\u2029"]


def test_labels_with_any_line_break_are_refused(files):
    before = open(files["graph"], "rb").read()
    for brk in LINE_BREAKS:
        labels = [f"class {i}" for i in range(10)]
        labels[3] = f"a{brk}b"
        with pytest.raises(ValueError, match=r"without line breaks.*labels\[3\]=") as info:
            tflite.add_metadata(files["graph"], labels=labels)
        assert repr(labels[3]) in str(info.value), brk
    assert open(files["graph"], "rb").read() == before


def test_bad_labels_among_many_are_named_briefly():
    labels = [f"class {i}" for i in range(10_000)]
    labels[17] = ""
    labels[4242] = "tab\u2028separated"
    for i in range(9000, 9010):
        labels[i] = "x" * 1000 + "\n"
    with pytest.raises(ValueError) as info:
        tflite.add_metadata("unused.tflite", labels=labels)  # labels are checked first
    message = str(info.value)
    assert len(message) < 700, len(message)
    assert "Received 12 bad of 10000: labels[17]='', labels[4242]='tab\\u2028separated', " \
           "labels[9000]='xxx" in message
    assert message.endswith(" and 7 more.")
