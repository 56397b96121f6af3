"""The benchmark_model output parser and the adb runner, against a stand-in adb.

The fixtures in tests/data/benchmark/ follow the printing code of the real tools
(see tests/data/benchmark/README.md); the stand-in adb records its argv and
answers like adb does, so the exact command sequence is checked without a phone.
"""

import json
import os
import stat
import sys

import pytest

from keras_mobile.benchmark import android, parse_benchmark_output, run_android

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "benchmark")
S = "R5CT123ABC"
BIN = "/data/local/tmp/benchmark_model"


def fixture(name):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return f.read()


# ----------------------------------------------------------------------------- parser


def test_parse_classic_cpu_xnnpack():
    p = parse_benchmark_output(fixture("tflite_cpu_xnnpack.txt"))
    assert p["format"] == "tflite"
    # The inference line (after the 2nd "Running benchmark"), not the warmup one.
    assert p["count"] == 108
    assert p["mean_ms"] == pytest.approx(9.26487)
    assert p["min_ms"] == pytest.approx(9.087)
    assert p["max_ms"] == pytest.approx(11.893)
    assert p["std_ms"] == pytest.approx(0.312)
    assert p["median_ms"] == pytest.approx(9.198)
    assert (p["p5_ms"], p["p95_ms"]) == pytest.approx((9.101, 9.720))
    assert p["warmup_count"] == 53
    assert p["warmup_mean_ms"] == pytest.approx(9.45226)
    assert p["init_ms"] == pytest.approx(61.302)
    assert p["first_ms"] == pytest.approx(14.233)
    assert p["model_size_mb"] == pytest.approx(13.9786)
    assert p["peak_memory_mb"] == pytest.approx(44.7383)
    assert (p["init_memory_mb"], p["overall_memory_mb"]) == pytest.approx((31.8711, 38.5117))
    assert p["delegates"] == {"XNNPACK": {"fully_delegated": True, "partitions": 1}}
    assert (p["fully_delegated"], p["delegate_partitions"]) == (True, 1)


def test_parse_apk_logcat_gpu_partial_delegation():
    p = parse_benchmark_output(fixture("tflite_gpu_apk_logcat.txt"))
    assert p["count"] == 193
    assert p["mean_ms"] == pytest.approx(5.18159)
    assert (p["min_ms"], p["max_ms"], p["std_ms"]) == pytest.approx((4.932, 6.874, 0.214))
    assert p["median_ms"] is None  # this build prints no percentiles
    assert p["init_ms"] == pytest.approx(279.214)
    assert p["first_ms"] == pytest.approx(24.410)
    assert p["warmup_count"] == 97
    assert p["peak_memory_mb"] is None
    assert p["delegates"] == {"GPU": {"fully_delegated": False, "partitions": 3},
                              "XNNPACK": {"fully_delegated": False, "partitions": 2}}
    assert (p["fully_delegated"], p["delegate_partitions"]) == (False, 3)


def test_parse_legacy_output():
    p = parse_benchmark_output(fixture("tflite_legacy.txt"))
    assert p["format"] == "tflite-legacy"
    assert p["count"] == 50
    assert p["mean_ms"] == pytest.approx(137.722)
    assert (p["min_ms"], p["max_ms"], p["std_ms"]) == pytest.approx((137.079, 143.416, 0.896))
    # Warmup printed in the all-same form "count=1 curr=146161".
    assert p["warmup_count"] == 1
    assert p["first_ms"] == pytest.approx(146.161)
    assert p["init_ms"] == pytest.approx(4.452)


def test_parse_litert_prefers_microsecond_stats_over_the_block():
    p = parse_benchmark_output(fixture("litert_cpu.txt"))
    assert p["format"] == "litert"
    assert p["count"] == 226
    assert p["mean_ms"] == pytest.approx(4.42518)  # the block rounds it to 4.43
    assert p["median_ms"] == pytest.approx(4.396)
    assert p["min_ms"] == pytest.approx(4.287)
    assert p["first_ms"] == pytest.approx(6.893)
    assert p["init_ms"] == pytest.approx(35.812)
    assert p["warmup_count"] == 112
    assert p["peak_memory_mb"] == pytest.approx(17.66)
    assert (p["init_memory_mb"], p["overall_memory_mb"]) == pytest.approx((12.38, 14.02))
    assert p["throughput_mb_s"] == pytest.approx(129.76)
    assert p["model_size_mb"] == pytest.approx(5.24673)


def test_parse_litert_block_alone_from_logcat():
    p = parse_benchmark_output(fixture("litert_gpu_logcat_litert_tag.txt"))
    assert p["format"] == "litert"
    assert p["count"] == 348
    assert p["mean_ms"] == pytest.approx(2.87)
    assert (p["min_ms"], p["max_ms"], p["std_ms"]) == pytest.approx((2.71, 3.94, 0.09))
    assert p["median_ms"] is None
    assert p["init_ms"] == pytest.approx(412.67)
    assert p["first_ms"] == pytest.approx(31.05)
    assert (p["warmup_count"], p["warmup_mean_ms"]) == (161, pytest.approx(3.12))
    assert p["peak_memory_mb"] == pytest.approx(101.2)


def test_parse_brief_logcat_and_bare_lines_give_the_same_numbers():
    text = fixture("tflite_cpu_xnnpack.txt")
    brief = text.replace("INFO: ", "I/tflite  ( 4321): ")
    bare = text.replace("INFO: ", "")
    for variant in (brief, bare):
        p = parse_benchmark_output(variant)
        assert (p["count"], p["median_ms"], p["init_ms"]) == (108, pytest.approx(9.198),
                                                               pytest.approx(61.302))


def test_parse_warmup_line_alone_is_not_an_inference_result():
    text = fixture("tflite_cpu_xnnpack.txt")
    cut = text[:text.index("INFO: Running benchmark for at least 50")]
    assert "count=53" in cut
    with pytest.raises(ValueError, match="No inference timings"):
        parse_benchmark_output(cut)


def test_parse_delegate_failure_shows_the_reason():
    with pytest.raises(ValueError) as info:
        parse_benchmark_output(fixture("tflite_gpu_failure.txt"))
    message = str(info.value)
    assert "Failed to apply GPU delegate." in message
    assert "Node 333 is already a consumer of the value 334" in message


# ----------------------------------------------------------------------------- stand-in adb

FAKE_ADB = r'''#!PYTHON
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "config.json")) as f:
    cfg = json.load(f)
argv = sys.argv[1:]
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps(argv) + "\n")
if argv[:1] == ["-s"]:
    argv = argv[2:]

def out(text, code=0, err=""):
    sys.stdout.write(text)
    sys.stderr.write(err)
    sys.exit(code)

def read(name):
    with open(name) as f:
        return f.read()

cmd, rest = argv[0], argv[1:]
if cmd == "devices":
    out("List of devices attached\n" + "".join(f"{s}\t{st}\n" for s, st in cfg["devices"]) + "\n")
if cmd == "push":
    out(f"{rest[0]}: 1 file pushed, 0 skipped. 31.4 MB/s (1500000 bytes in 0.046s)\n")
if cmd == "install":
    out("Performing Streamed Install\nSuccess\n")
if cmd == "logcat" and rest == ["-c"]:
    out("")
if cmd == "logcat":
    counter = os.path.join(here, "logcat_reads")
    n = int(read(counter)) + 1 if os.path.exists(counter) else 1
    with open(counter, "w") as f:
        f.write(str(n))
    if n <= cfg.get("logcat_empty_polls", 0):
        out("--------- beginning of main\n")
    out(read(cfg["output"]))
if cmd == "shell":
    if rest[0] == "getprop":
        out(cfg["props"][rest[1]] + "\n")
    if rest[0] in ("chmod", "rm"):
        out("")
    if rest[0] == "ls":
        if cfg.get("binary_on_device"):
            out(rest[1] + "\n")
        out("", 1, f"ls: {rest[1]}: No such file or directory\n")
    if rest[0] == "pm":
        if cfg.get("apk_installed"):
            out("package:/data/app/~~Zk1/org.tensorflow.lite.benchmark-Qx==/base.apk\n")
        out("", 1)
    if rest[0] == "am":
        out("Starting: Intent { cmp=org.tensorflow.lite.benchmark/.BenchmarkModelActivity "
            "(has extras) }\n")
    if "/data/local/tmp/benchmark_model" in rest:
        out(read(cfg["output"]), cfg.get("exit_code", 0))
out("", 1, "fake adb: unexpected command " + " ".join(argv) + "\n")
'''

PROPS = {"ro.product.model": "Pixel 7", "ro.build.version.release": "14",
         "ro.board.platform": "gs201"}


class FakeAdb:
    def __init__(self, directory):
        self.dir = directory

    def configure(self, output="tflite_cpu_xnnpack.txt", devices=((S, "device"),), **kw):
        config = {"devices": [list(d) for d in devices], "output": os.path.join(DATA, output),
                  "props": PROPS, **kw}
        (self.dir / "config.json").write_text(json.dumps(config))

    def calls(self):
        log = self.dir / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def adb(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "adb"
    script.write_text(FAKE_ADB.replace("PYTHON", sys.executable, 1))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setattr(android, "_POLL_SECONDS", 0)
    fake = FakeAdb(bin_dir)
    fake.configure()
    return fake


@pytest.fixture
def graph(tmp_path):
    path = tmp_path / "mobilenet v2.tflite"  # the space is replaced on the device
    path.write_bytes(b"\0" * 1_500_000)
    return str(path)


@pytest.fixture
def binary(tmp_path):
    path = tmp_path / "android_aarch64_benchmark_model"
    path.write_bytes(b"\x7fELF")
    return str(path)


REMOTE_GRAPH = "/data/local/tmp/mobilenet_v2.tflite"
BASIC = [f"--graph={REMOTE_GRAPH}", "--num_threads=4", "--num_runs=50", "--warmup_runs=10"]
GETPROPS = [["-s", S, "shell", "getprop", k] for k in PROPS]
CLEANUP = ["-s", S, "shell", "rm", "-f", REMOTE_GRAPH]


def test_run_binary_cpu_command_sequence_and_result(adb, graph, binary):
    adb.configure(devices=[(S, "device"), ("emulator-5554", "offline")])
    r = run_android(graph, benchmark_binary=binary, taskset="f0", model="MobileNetV2",
                    mode="float32", macs=300_774_272)
    assert adb.calls() == [
        ["devices"],
        ["-s", S, "push", binary, BIN],
        ["-s", S, "shell", "chmod", "+x", BIN],
        ["-s", S, "push", graph, REMOTE_GRAPH],
        ["-s", S, "shell", "taskset", "f0", BIN] + BASIC + ["--use_xnnpack=true"],
        *GETPROPS,
        CLEANUP,
    ]
    assert (r.target, r.delegate, r.num_threads, r.model, r.mode) == (
        "android", "xnnpack", 4, "MobileNetV2", "float32")
    assert r.device == "Pixel 7 (Android 14, gs201)"
    assert r.versions["android"] == "14"
    assert r.versions["benchmark_tool"] == "benchmark_model"
    assert (r.num_runs, r.warmup_runs) == (108, 53)  # counts the tool ran, not the requests
    assert r.extra["requested_num_runs"] == 50
    assert r.median_ms == pytest.approx(9.198)
    assert r.p90_ms is None
    assert (r.mean_ms, r.min_ms, r.max_ms, r.std_ms) == pytest.approx(
        (9.26487, 9.087, 11.893, 0.312))
    assert (r.init_ms, r.first_ms) == pytest.approx((61.302, 14.233))
    assert r.peak_memory_mb == pytest.approx(44.7383)
    assert r.model_size_mb == pytest.approx(1.5)
    assert (r.fully_delegated, r.delegate_partitions) == (True, 1)
    assert r.macs == 300_774_272
    assert r.graph == os.path.abspath(graph)


def test_run_binary_gpu_flags_and_gpu_delegation_status(adb, graph, binary):
    adb.configure(output="tflite_gpu_apk_logcat.txt",
                  devices=[("emulator-5554", "device"), (S, "device")])
    r = run_android(graph, serial=S, benchmark_binary=binary, use_gpu=True, gpu_backend="cl",
                    gpu_precision_loss_allowed=False, num_threads=2, num_runs=100, warmup_runs=5)
    bench = adb.calls()[4]
    assert bench == ["-s", S, "shell", BIN, f"--graph={REMOTE_GRAPH}", "--num_threads=2",
                     "--num_runs=100", "--warmup_runs=5", "--use_xnnpack=true", "--use_gpu=true",
                     "--gpu_precision_loss_allowed=false", "--gpu_backend=cl"]
    assert r.delegate == "gpu"
    # The GPU delegate's status (3 kernels), not XNNPACK's (2).
    assert (r.fully_delegated, r.delegate_partitions) == (False, 3)
    assert r.mean_ms == pytest.approx(5.18159)
    assert r.num_runs == 193


def test_run_nnapi_warns_and_passes_its_flags(adb, graph, binary):
    with pytest.warns(FutureWarning, match="NNAPI is deprecated as of Android 15"):
        r = run_android(graph, benchmark_binary=binary, use_xnnpack=False, use_nnapi=True,
                        nnapi_accelerator_name="qti-dsp")
    assert adb.calls()[4][-4:] == ["--warmup_runs=10", "--use_xnnpack=false", "--use_nnapi=true",
                                   "--nnapi_accelerator_name=qti-dsp"]
    assert r.delegate == "nnapi"
    assert r.fully_delegated is None  # the output says nothing about NNAPI


def test_run_with_binary_already_on_device(adb, graph):
    adb.configure(binary_on_device=True)
    r = run_android(graph, use_xnnpack=False, require_full_delegation=True)
    calls = adb.calls()
    assert calls[:3] == [["devices"], ["-s", S, "shell", "ls", BIN],
                         ["-s", S, "push", graph, REMOTE_GRAPH]]
    assert calls[3] == ["-s", S, "shell", BIN] + BASIC + ["--use_xnnpack=false",
                                                          "--require_full_delegation=true"]
    assert r.delegate == "none"
    assert r.median_ms == pytest.approx(9.198)


def test_run_without_binary_anywhere_says_how_to_push_it(adb, graph):
    with pytest.raises(RuntimeError, match="Pass benchmark_binary="):
        run_android(graph)
    assert adb.calls() == [["devices"], ["-s", S, "shell", "ls", BIN]]


def test_run_apk_flow_polls_logcat(adb, graph, tmp_path):
    apk = tmp_path / "benchmark_model.apk"
    apk.write_bytes(b"PK")
    adb.configure(output="tflite_gpu_apk_logcat.txt", logcat_empty_polls=2)
    r = run_android(graph, benchmark_apk=True, benchmark_binary=str(apk), use_gpu=True)
    args = " ".join(BASIC + ["--use_xnnpack=true", "--use_gpu=true",
                             "--gpu_precision_loss_allowed=true"])
    logcat = ["-s", S, "logcat", "-d", "-s", "tflite"]
    assert adb.calls() == [
        ["devices"],
        ["-s", S, "install", "-r", "-d", "-g", str(apk)],
        ["-s", S, "push", graph, REMOTE_GRAPH],
        ["-s", S, "logcat", "-c"],
        ["-s", S, "shell", "am", "start", "-S", "-n",
         "org.tensorflow.lite.benchmark/.BenchmarkModelActivity", "--es", "args", f'"{args}"'],
        logcat, logcat, logcat,  # two polls before the result, the one that finds it
        logcat,  # one more read for the memory lines that follow the timings
        *GETPROPS,
        CLEANUP,
    ]
    assert r.versions["benchmark_tool"] == "benchmark_model APK"
    assert (r.delegate, r.fully_delegated, r.delegate_partitions) == ("gpu", False, 3)
    assert (r.num_runs, r.warmup_runs) == (193, 97)
    assert r.mean_ms == pytest.approx(5.18159)
    assert r.median_ms is None
    assert r.init_ms == pytest.approx(279.214)


def test_run_apk_requires_the_app(adb, graph):
    with pytest.raises(RuntimeError, match="benchmark APK .* is not installed"):
        run_android(graph, benchmark_apk=True)
    assert adb.calls()[-1] == ["-s", S, "shell", "pm", "path", "org.tensorflow.lite.benchmark"]


def test_run_apk_reports_a_delegate_failure_from_logcat(adb, graph):
    adb.configure(output="tflite_gpu_failure.txt", apk_installed=True)
    with pytest.raises(RuntimeError, match="Failed to apply GPU delegate") as info:
        run_android(graph, benchmark_apk=True, use_gpu=True)
    assert "Node 333 is already a consumer" in str(info.value)
    assert adb.calls()[-1] == CLEANUP


def test_run_apk_times_out_with_the_last_logcat_lines(adb, graph):
    adb.configure(output="tflite_gpu_apk_logcat.txt", apk_installed=True,
                  logcat_empty_polls=10**6)
    with pytest.raises(TimeoutError, match="No benchmark result in logcat after 0.3 s"):
        run_android(graph, benchmark_apk=True, timeout=0.3)
    assert adb.calls()[-1] == CLEANUP


def test_run_binary_failure_exit_code_shows_the_reason(adb, graph, binary):
    adb.configure(output="tflite_gpu_failure.txt", exit_code=1)
    with pytest.raises(RuntimeError, match="exit code 1") as info:
        run_android(graph, benchmark_binary=binary, use_gpu=True)
    assert "ERROR: Failed to apply GPU delegate." in str(info.value)
    assert adb.calls()[-1] == CLEANUP  # the pushed model is removed anyway


def test_run_binary_failure_without_exit_code_still_raises(adb, graph, binary):
    adb.configure(output="tflite_gpu_failure.txt", exit_code=0)  # adb without shell v2
    with pytest.raises(ValueError, match="Failed to apply GPU delegate"):
        run_android(graph, benchmark_binary=binary, use_gpu=True)


@pytest.mark.parametrize("devices, serial, error, message", [
    ([(S, "device"), ("emulator-5554", "device")], None, ValueError,
     "Several devices are attached: R5CT123ABC, emulator-5554. Pass serial="),
    ([(S, "device")], "0123456789", ValueError,
     r"Received: serial='0123456789'. Attached: R5CT123ABC \(device\)"),
    ([(S, "unauthorized")], None, RuntimeError, r"No Android device is ready .*unauthorized"),
    ([], None, RuntimeError, "lists: none"),
])
def test_serial_selection_errors(adb, graph, binary, devices, serial, error, message):
    adb.configure(devices=devices)
    with pytest.raises(error, match=message):
        run_android(graph, serial=serial, benchmark_binary=binary)
    assert adb.calls() == [["devices"]]


def test_missing_adb_gives_an_install_hint(graph, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="platform-tools"):
        run_android(graph)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(use_gpu=True, use_nnapi=True), ValueError, "Only one accelerator delegate"),
    (dict(use_gpu=True, gpu_backend="vulkan"), ValueError,
     "gpu_backend must be one of cl, gl or None. Received: gpu_backend='vulkan'"),
    (dict(gpu_backend="cl"), ValueError, "use_gpu=False"),
    (dict(nnapi_accelerator_name="qti-dsp"), ValueError, "use_nnapi=False"),
    (dict(num_threads=0), ValueError, "Received: num_threads=0"),
    (dict(num_runs=2.5), TypeError, "Received: num_runs=2.5"),
    (dict(warmup_runs=-1), ValueError, "Received: warmup_runs=-1"),
    (dict(taskset="big"), ValueError, "Received: taskset='big'"),
    (dict(taskset="f0", benchmark_apk=True), ValueError, "benchmark_apk=True"),
    (dict(benchmark_binary="/nonexistent/benchmark_model"), FileNotFoundError,
     "benchmark_binary must be an existing file"),
    (dict(timeout=0), ValueError, "Received: timeout=0"),
])
def test_arguments_are_checked_before_any_adb_call(adb, graph, kwargs, error, message):
    with pytest.raises(error, match=message):
        run_android(graph, **kwargs)
    assert adb.calls() == []


def test_missing_graph_is_checked_first(adb, tmp_path):
    with pytest.raises(FileNotFoundError, match="graph must be an existing .tflite file"):
        run_android(str(tmp_path / "missing.tflite"))
    assert adb.calls() == []


def test_taskset_int_mask(adb, graph, binary):
    run_android(graph, benchmark_binary=binary, taskset=0xF0)
    assert adb.calls()[4][3:6] == ["taskset", "f0", BIN]
