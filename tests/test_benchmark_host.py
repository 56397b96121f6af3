"""Host benchmark (LiteRT in a child process) and the convert/benchmark scripts, end to end."""

import json
import os
import subprocess
import sys

import pytest

import keras_mobile
from keras_mobile import tflite
from keras_mobile.benchmark import host, read_results
from keras_mobile.tflite import runtime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    model = keras_mobile.MobileNetV2(weights=None, alpha=0.35, input_shape=(32, 32, 3),
                                     classes=4)
    path = str(tmp_path_factory.mktemp("graph") / "m.tflite")
    tflite.convert(model, path, check=False)
    return path


def test_run_reports_consistent_statistics(graph):
    r = host.run(graph, num_runs=30, warmup_runs=3, model="MobileNetV2", mode="float32")
    assert (r.target, r.delegate, r.num_threads, r.num_runs) == ("host", "xnnpack", 1, 30)
    assert 0 < r.min_ms <= r.median_ms <= r.p90_ms <= r.max_ms
    assert r.std_ms >= 0 and r.init_ms > 0 and r.first_ms > 0
    assert r.delegate_partitions == 1 and r.fully_delegated is True
    # Child process CPU time / wall time / num_threads over the timed invokes: one interpreter
    # thread cannot use more CPU than wall time (measured <= 1.005); a busy host only lowers it.
    assert 0 < r.cpu_wall_ratio <= 1.1
    assert 0 < r.peak_memory_mb < 200
    assert r.model_size_mb == pytest.approx(os.path.getsize(graph) / 1e6)
    assert r.versions["ai-edge-litert"] and "cores" in r.device and r.date.endswith("+00:00")


def test_without_xnnpack_and_interleaved(graph, tmp_path):
    copy = tmp_path / "b.tflite"
    copy.write_bytes(open(graph, "rb").read())
    a, b = host.run_many([graph, str(copy)], num_runs=12, warmup_runs=1, rounds=4,
                         use_xnnpack=False, models=["a", "b"], modes=["float32", None])
    assert (a.model, b.model, a.mode, b.mode) == ("a", "b", "float32", None)
    assert a.delegate == "none" and a.delegate_partitions is None and a.fully_delegated is None
    assert a.num_runs == b.num_runs == 12 and a.extra["rounds"] == 4
    assert a.peak_memory_mb is None  # per-model memory only when timed alone


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_runs=0), "num_runs must be an int >= 1"),
    (dict(warmup_runs=-1), "warmup_runs must be an int >= 0"),
    (dict(num_threads=1.5), "num_threads must be an int"),
])
def test_bad_arguments(graph, kwargs, message):
    with pytest.raises(ValueError, match=message):
        host.run(graph, **kwargs)


def test_bad_graphs(tmp_path):
    with pytest.raises(ValueError, match="existing .tflite file"):
        host.run(str(tmp_path / "missing.tflite"))
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        host.run(str(bogus))


def _script(name, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *args],
                          capture_output=True, text=True, env=env, timeout=600)


def test_convert_and_benchmark_scripts(tmp_path):
    out = tmp_path / "m_int8.tflite"
    proc = _script("convert.py", "--smoke", "--model=MobileNetV2", "--mode=int8_percentile",
                   "--inference_type=uint8",
                   f"--output={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "int8 (uint8 in, uint8 out)" in proc.stdout
    assert "XNNPACK: 1 partition(s)" in proc.stdout  # the softmax head too (uint8 I/O outside)
    info = tflite.inspect(str(out))
    assert [name for _, name in info.float_ops] == ["DEQUANTIZE", "SOFTMAX", "QUANTIZE"]
    assert info.inputs[0].dtype == "UINT8" and list(info.inputs[0].shape) == [1, 64, 64, 3]

    report = tmp_path / "report"
    proc = _script("benchmark.py", f"--graph={out}", "--num_runs=5", "--warmup_runs=1",
                   f"--report={report}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (result,) = read_results(str(report / "results.json"))
    assert result.graph == str(out) and result.num_runs == 5 and result.median_ms > 0
    with open(report / "results.json") as f:
        assert json.load(f)  # valid JSON on disk
    assert "| float" not in (report / "report.md").read_text()  # mode unknown for a bare file


def test_benchmark_sweep_smoke(tmp_path):
    proc = _script("benchmark.py", "--models=MobileNetV3Small", "--modes=float32,int8,qat_int8",
                   "--smoke", f"--report={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = read_results(str(tmp_path / "results.json"))
    assert [(r.model, r.mode) for r in results] == [("MobileNetV3Small", "float32"),
                                                     ("MobileNetV3Small", "int8"),
                                                     ("MobileNetV3Small", "qat_int8")]
    assert all(r.macs > 0 for r in results)
    assert (tmp_path / "latency_vs_macs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.path.exists(tmp_path / "graphs" / "MobileNetV3Small_64_int8.tflite")
    # The untrained QAT graph gets its ranges from one training-mode pass: no float
    # DEQUANTIZE/QUANTIZE pair at the input, one XNNPACK partition (the softmax head
    # computes in float from the int8 logits).
    qat = str(tmp_path / "graphs" / "MobileNetV3Small_64_qat_int8.tflite")
    assert [name for _, name in tflite.inspect(qat).float_ops] == ["DEQUANTIZE", "SOFTMAX"]
    assert runtime.delegation(runtime.interpreter(qat)) == (1, True)


def test_speed_report_smoke(tmp_path):
    """scripts/speed_report.py: convert, time in 2 sweeps, measure training, write the report;
    an official model's file joins the timing at its own input size only."""
    from keras_mobile.benchmark import kernels, speed
    from keras_mobile.benchmark.sweep import Graphs

    report = tmp_path / "speed"
    proc = _script("speed_report.py", "--smoke", "--models=MobileNetV3Small",
                   "--modes=float32,int8", f"--report={report}", f"--data_dir={tmp_path / 'data'}",
                   "--kernel_profiles=MobileNetV3Small")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(report / "results.json") as f:
        saved = json.load(f)
    assert len(saved["sweeps"]) == 2
    timed = [(r["model"], r["mode"]) for r in saved["sweeps"][1]]
    assert timed == [("MobileNetV3Small", "float32"), ("MobileNetV3Small", "int8"),
                     ("keras.MobileNetV2", "float32"), ("keras.MobileNetV3Small", "float32")]
    assert all(r["delegate_partitions"] == 1 and r["median_ms"] > 0
               for sweep in saved["sweeps"] for r in sweep)
    assert saved["training_images_per_second"]["MobileNetV3Small"] > 0
    text = (report / "report.md").read_text()
    for heading in ("## Latency by mode", "## Float32 ÷ keras.MobileNetV2", "## Int8 speed-up",
                    "## keras_mobile ÷ the same keras.applications model",
                    "## Training throughput"):
        assert heading in text
    assert "## Where the time goes" in text
    if kernels.available():  # perf: both graphs' time by kernel kind, about their latency
        for mode in ("float32", "int8"):
            profile = saved["kernels_ms"][f"MobileNetV3Small {mode}"]
            assert profile["GEMM: 1x1 conv, dense, matmul"] > 0, profile
            median = saved["sweeps"][0][timed.index(("MobileNetV3Small", mode))]["median_ms"]
            assert 0.3 * median < sum(profile.values()) < 3 * median, (profile, median)
    else:
        assert saved["kernels_ms"] == {} and "perf is not available here" in text
    row = next(line for line in text.splitlines() if line.startswith("| MobileNetV3Small |")
               and "×" in line)
    assert row.count("(1)") == 1 and row.endswith("≥ 1.8× |")  # int8: one partition

    official = tmp_path / "official"
    official.mkdir()
    graph = report / "graphs" / "MobileNetV3Small_64_float32.tflite"
    (official / "emo_1m.tflite").write_bytes(graph.read_bytes())
    ours = Graphs([], ["EMO1M"], ["float32"], [123])
    found, note = speed.official_graphs(str(official), ours, 64)
    assert found.models == ["official.EMO1M"] and found.macs == [123] and "left out" not in note
    found, note = speed.official_graphs(str(official), ours, 224)
    assert found.models == [] and "not at 224 px, left out: emo_1m.tflite" in note


# `perf report --stdio --sort symbol -n` of an int8 EMO-1M on this host (shortened).
PERF_REPORT = os.path.join(os.path.dirname(__file__), "data", "benchmark", "perf_report.txt")


def test_kernel_profile_parsing():
    """perf's per-symbol samples (this host's format) -> ms per invoke by kernel kind: the
    difference of a short and a long run over the extra invokes; Python is not counted."""
    from collections import Counter

    from keras_mobile.benchmark import kernels

    with open(PERF_REPORT, encoding="utf-8") as f:
        long = kernels.parse_samples(f.read())
    assert long["xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_7x16c8__avx512vnni_prfm"] == 1268
    assert long["tflite::ops::builtin::softmax::SoftmaxQuantized<signed char>(TfLiteContext*, "
                "TfLiteNode*)"] == 9
    assert len(long) == 8
    short = Counter({"xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_7x16c8__avx512vnni_prfm": 68,
                     "_PyEval_EvalFrameDefault": 300})
    ms = kernels.per_invoke(short, long, extra_invokes=100, frequency=2000)
    assert ms == pytest.approx({
        "GEMM: 1x1 conv, dense, matmul": 6.0, "depthwise conv": 2.315,
        "activations (sigmoid, GELU, hard-swish, LUT)": 2.265, "softmax": 0.685,
        "int8 <-> float conversions": 0.135, "copies, transposes, padding": 0.22,
        "TFLite reference kernels (outside XNNPACK)": 0.045})
    float_ms = {"GEMM": 4.0, "depthwise conv": 1.0}
    int8_ms = {"GEMM": 1.5, "depthwise conv": 1.2, "conversions": 0.1}
    assert kernels.bound(float_ms, int8_ms) == pytest.approx(5.0 / 2.5)
    with pytest.raises(ValueError, match="0 < short < long"):
        kernels.profile("m.tflite", short=10, long=10)


@pytest.mark.parametrize("script, args, message", [
    ("convert.py", ["--model=EMO1", "--smoke"], "Unknown model"),
    ("convert.py", ["--mode=int8", "--model=EMO1M"], "needs --calibration"),
    ("benchmark.py", [], "Give either --graph"),
    ("benchmark.py", ["--graph=/nonexistent.tflite"], "existing .tflite file"),
    ("speed_report.py", ["--official_dir=/nonexistent"], "official_dir must be a folder"),
    ("speed_report.py", ["--sweeps=0"], "sweeps must be a positive int"),
])
def test_scripts_fail_with_one_clear_line(script, args, message):
    proc = _script(script, *args)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
