"""Benchmark a .tflite graph on an Android phone over adb, and parse the tool's output.

Two runners from the TFLite/LiteRT sources are supported:

* the ``benchmark_model`` binary pushed to ``/data/local/tmp`` and run with
  ``adb shell`` (output on stdout/stderr), and
* the benchmark APK (``org.tensorflow.lite.benchmark/.BenchmarkModelActivity``),
  whose output is read back from logcat (tag ``tflite``).

:func:`parse_benchmark_output` reads the classic TFLite tool
(``tflite/tools/benchmark/benchmark_model.cc``: ``count=... first=... avg=... std=...``
lines from ``Stat::OutputToStream`` in microseconds, ``Inference timings in us: ...``)
and the LiteRT CompiledModel tool (``litert/tools/benchmark_litert_model.h``: the
``========== BENCHMARK RESULTS ==========`` block in milliseconds), with or without
``INFO: `` prefixes and logcat prefixes. See ``tflite/README.md`` for the commands.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import warnings

from keras_mobile.benchmark.result import BenchmarkResult, utc_now

REMOTE_DIR = "/data/local/tmp"
REMOTE_BINARY = REMOTE_DIR + "/benchmark_model"
APK_PACKAGE = "org.tensorflow.lite.benchmark"
APK_ACTIVITY = APK_PACKAGE + "/.BenchmarkModelActivity"
GPU_BACKENDS = ("cl", "gl")
_POLL_SECONDS = 1.0  # logcat polling interval in APK mode
_TAIL_LINES = 15

# ----------------------------------------------------------------------------- parsing

_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)"
# `adb logcat -v threadtime` (the default): "11-21 10:00:00.123  1234  1234 I tflite  : msg".
_LOGCAT_THREADTIME = re.compile(
    r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEFA]\s+\S+?\s*: ?")
# `adb logcat -v brief`: "I/tflite  ( 1234): msg".
_LOGCAT_BRIEF = re.compile(r"^[VDIWEFA]/[^(:]+?\s*(?:\(\s*\d+\))?: ?")
_SEVERITY = re.compile(r"^(?:INFO|WARN|WARNING|ERROR|FATAL|VERBOSE|DEBUG): ?")
_SOURCE_LOCATION = re.compile(r"^\[[\w.+-]+:\d+\] ?")  # LITERT_LOG's "[file.h:94] "

_RUNNING = re.compile(r"^Running benchmark for (?:at least )?\d+ iterations")
_KEY_VALUE = re.compile(r"(\w+)=(" + _NUMBER + ")")
_TIMINGS = re.compile(r"^(Average inference timings|Inference timings) in us: (.*)$")
_LABELLED = re.compile(r"([A-Za-z][A-Za-z ()]*?): (" + _NUMBER + ")")
_MODEL_SIZE = re.compile(r"^The input model file size \(MB\): (" + _NUMBER + ")")
_SESSION = re.compile(r"^Initialized session in (" + _NUMBER + r") ?ms")
_MEMORY_DELTA = re.compile(r"^Memory footprint delta from the start of the tool \(MB\): "
                           r"init=(" + _NUMBER + ") overall=(" + _NUMBER + ")")
_PEAK = re.compile(r"^Overall peak memory footprint \(MB\) via periodic monitoring: ("
                   + _NUMBER + ")")
_FULL = re.compile(r"^Explicitly applied (\S+) delegate, and the model graph will be "
                   r"completely executed")
_PARTIAL = re.compile(r"^Explicitly applied (\S+) delegate, and the model graph will be "
                      r"partially executed by the delegate w/ (\d+) delegate kernels")
_NOT_DELEGATED = re.compile(r"^Though (\S+) delegate is explicitly applied")
_BLOCK_START = re.compile(r"^=+ BENCHMARK RESULTS =+$")
_BLOCK_END = re.compile(r"^=+$")
_BLOCK_ITEM = re.compile(r"^([A-Za-z][A-Za-z ()]*?):\s+(" + _NUMBER + r")"
                         r"(?:\s*(?:ms|MB/s|MB))?(?:\s*\((\d+) runs\))?")
# Messages after which benchmark_model gives up (benchmark_tflite_model.cc, benchmark_main.cc).
_FATAL = re.compile(r"Failed to apply|Disallowed CPU fallback|Failed to allocate tensors|"
                    r"Failed to load model|Failed to initialize|failed to invoke|"
                    r"Benchmarking failed")
_DONE = re.compile(r"(?:Average inference timings|Inference timings) in us")


def _messages(text: str):
    """Yields each line's message, without logcat, severity and source-location prefixes."""
    for raw in text.splitlines():
        line, stripped = _LOGCAT_THREADTIME.subn("", raw, count=1)
        if not stripped:
            line = _LOGCAT_BRIEF.sub("", line, count=1)
        for pattern in (_SEVERITY, _SOURCE_LOCATION):
            line = pattern.sub("", line, count=1)
        yield line.strip()


def _first(*values):
    """The first value that is not None (None if all are)."""
    return next((v for v in values if v is not None), None)


def _stat_ms(values: dict) -> dict:
    """A ``Stat::OutputToStream`` line (microseconds) as milliseconds.

    The all-same form ``count=N curr=C`` has min = max = avg = first = curr, std = 0.
    """
    ms = {k: float(v) / 1000.0 for k, v in values.items() if k != "count"}
    if "min" not in ms and "curr" in ms:  # "count=1 curr=146161" / "(all same)"
        ms.update({"min": ms["curr"], "max": ms["curr"], "avg": ms["curr"], "std": 0.0})
        ms.setdefault("first", ms["curr"])
    ms["count"] = int(float(values["count"])) if "count" in values else None
    return ms


def _tail(text: str, n: int = _TAIL_LINES) -> str:
    lines = [raw.rstrip() for raw in text.splitlines() if raw.strip()]
    return "\n".join(lines[-n:]) if lines else "(no output)"


def parse_benchmark_output(text: str) -> dict:
    """Parses TFLite ``benchmark_model`` or LiteRT ``benchmark_model`` output.

    Args:
        text: stdout/stderr of the tool, or its logcat lines (``INFO: ``, logcat and
            ``[file.h:NN]`` prefixes are all optional).

    Returns:
        A dict, times in milliseconds, None where the output does not say:
        ``count``, ``mean_ms``, ``min_ms``, ``max_ms``, ``std_ms``, ``median_ms``,
        ``p5_ms``, ``p95_ms`` (inference statistics), ``init_ms``, ``first_ms``,
        ``warmup_count``, ``warmup_mean_ms``, ``model_size_mb``, ``peak_memory_mb``,
        ``init_memory_mb``, ``overall_memory_mb``, ``throughput_mb_s``,
        ``delegates`` (``{"GPU": {"fully_delegated": bool, "partitions": int}}``, in
        the order applied), ``fully_delegated``/``delegate_partitions`` (the first
        delegate applied) and ``format`` (``tflite``, ``tflite-legacy``, ``litert``).

        Inference statistics come from the last ``count=...`` line of the inference
        phase (the tool prints ``Running benchmark for ...`` before the warmup
        phase and again before the inference phase), else from the LiteRT results
        block.

    Raises:
        ValueError: when no inference timing is found; the message ends with the
            last lines of the output (a delegate failure, a crash).

    Example:
        >>> parse_benchmark_output(open("out.txt").read())["median_ms"]  # doctest: +SKIP
        9.198
    """
    markers = 0
    stats = []  # (phase marker index, values)
    timings, block, delegates = {}, {}, {}
    timings_kind = None
    found = {}
    in_block = False
    for msg in _messages(text):
        if _RUNNING.match(msg):
            markers += 1
        elif msg.startswith(("count=", "curr=")):
            stats.append((markers, dict(_KEY_VALUE.findall(msg))))
        elif _BLOCK_START.match(msg):
            in_block, block = True, {}
        elif in_block and _BLOCK_END.match(msg):
            in_block = False
        elif in_block and _BLOCK_ITEM.match(msg):
            label, value, runs = _BLOCK_ITEM.match(msg).groups()
            block[label.lower()] = (float(value), int(runs) if runs else None)
        elif _TIMINGS.match(msg):
            timings_kind, rest = _TIMINGS.match(msg).groups()
            timings = {k.strip(): float(v) / 1000.0 for k, v in _LABELLED.findall(rest)}
        else:
            for key, pattern in (("model_size_mb", _MODEL_SIZE), ("session_ms", _SESSION),
                                 ("memory", _MEMORY_DELTA), ("peak_memory_mb", _PEAK)):
                match = pattern.match(msg)
                if match:
                    found[key] = tuple(float(g) for g in match.groups())
            match = _FULL.match(msg) or _PARTIAL.match(msg) or _NOT_DELEGATED.match(msg)
            if match:
                full = match.re is _FULL
                partitions = 1 if full else int(match.group(2)) if match.re is _PARTIAL else 0
                delegates[match.group(1)] = {"fully_delegated": full, "partitions": partitions}

    # Odd markers open a warmup phase, even markers an inference phase; with no marker
    # at all (grepped output) the last line is the inference one.
    if markers:
        inference = [s for m, s in stats if m and m % 2 == 0]
        warmup = [s for m, s in stats if m % 2 == 1]
    else:
        inference, warmup = stats[-1:], stats[-2:-1]
    inference = _stat_ms(inference[-1]) if inference else {}
    warmup = _stat_ms(warmup[-1]) if warmup else {}

    def from_block(*labels, runs=False):
        for label in labels:
            if label in block:
                return block[label][1] if runs else block[label][0]
        return None

    mean = _first(inference.get("avg"), timings.get("Inference (avg)"),
                  timings.get("Inference"), timings.get("no stats"), from_block("inference (avg)"))
    if mean is None:
        raise ValueError("No inference timings found in the benchmark output (no "
                         "'count=... avg=...' line, no 'Inference timings in us' line, no "
                         "LiteRT BENCHMARK RESULTS block). Last lines of the output:\n"
                         + _tail(text))
    memory = found.get("memory", (None, None))
    first_delegate = next(iter(delegates.values()), {})
    if block:
        fmt = "litert"
    elif timings_kind == "Average inference timings":
        fmt = "tflite-legacy"
    else:
        fmt = "tflite"
    return {
        "format": fmt,
        "count": _first(inference.get("count"), from_block("inference (avg)", runs=True)),
        "mean_ms": mean,
        "min_ms": _first(inference.get("min"), from_block("inference (min)")),
        "max_ms": _first(inference.get("max"), from_block("inference (max)")),
        "std_ms": _first(inference.get("std"), from_block("inference (std)")),
        "median_ms": inference.get("median"),
        "p5_ms": inference.get("p5"),
        "p95_ms": inference.get("p95"),
        "init_ms": _first(timings.get("Init"), found.get("session_ms", (None,))[0],
                          from_block("model initialization")),
        "first_ms": _first(timings.get("First inference"), warmup.get("first"),
                           from_block("warmup (first)", "first inference")),
        "warmup_count": _first(warmup.get("count"), from_block("warmup (avg)", runs=True)),
        "warmup_mean_ms": _first(timings.get("Warmup (avg)"), timings.get("Warmup"),
                                 warmup.get("avg"), from_block("warmup (avg)")),
        "model_size_mb": found.get("model_size_mb", (None,))[0],
        "peak_memory_mb": _first(found.get("peak_memory_mb", (None,))[0],
                                 from_block("peak memory")),
        "init_memory_mb": _first(memory[0], from_block("init footprint")),
        "overall_memory_mb": _first(memory[1], from_block("overall footprint")),
        "throughput_mb_s": from_block("throughput"),
        "delegates": delegates,
        "fully_delegated": first_delegate.get("fully_delegated"),
        "delegate_partitions": first_delegate.get("partitions"),
    }


# ----------------------------------------------------------------------------- adb runner


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int. Received: {name}={value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}")


def _check_run_args(graph, benchmark_binary, benchmark_apk, num_threads, num_runs,
                    warmup_runs, use_gpu, gpu_backend, use_nnapi, nnapi_accelerator_name,
                    taskset, timeout):
    """The one place where :func:`run_android` checks its arguments; returns the taskset mask."""
    if not os.path.isfile(graph):
        raise FileNotFoundError(f"graph must be an existing .tflite file. "
                                f"Received: graph={graph!r}")
    if benchmark_binary is not None and not os.path.isfile(benchmark_binary):
        raise FileNotFoundError("benchmark_binary must be an existing file (the benchmark_model "
                                f"binary, or the .apk with benchmark_apk=True). "
                                f"Received: benchmark_binary={benchmark_binary!r}")
    _positive_int("num_threads", num_threads)
    _positive_int("num_runs", num_runs)
    if isinstance(warmup_runs, bool) or not isinstance(warmup_runs, int) or warmup_runs < 0:
        raise ValueError(f"warmup_runs must be an int >= 0. Received: warmup_runs={warmup_runs!r}")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds. "
                         f"Received: timeout={timeout!r}")
    if use_gpu and use_nnapi:
        raise ValueError("Only one accelerator delegate can be benchmarked at once. Received: "
                         "use_gpu=True, use_nnapi=True. Run the GPU and NNAPI benchmarks "
                         "separately.")
    if gpu_backend is not None:
        if gpu_backend not in GPU_BACKENDS:
            raise ValueError(f"gpu_backend must be one of {', '.join(GPU_BACKENDS)} or None. "
                             f"Received: gpu_backend={gpu_backend!r}")
        if not use_gpu:
            raise ValueError(f"gpu_backend applies to the GPU delegate only. Received: "
                             f"gpu_backend={gpu_backend!r} with use_gpu=False.")
    if nnapi_accelerator_name is not None and not use_nnapi:
        raise ValueError(f"nnapi_accelerator_name applies to NNAPI only. Received: "
                         f"nnapi_accelerator_name={nnapi_accelerator_name!r} with use_nnapi=False.")
    mask = None
    if taskset is not None:
        if benchmark_apk:
            raise ValueError(f"taskset pins the pushed binary; the APK runs as an app. Received: "
                             f"taskset={taskset!r} with benchmark_apk=True.")
        if isinstance(taskset, int) and not isinstance(taskset, bool) and taskset > 0:
            mask = format(taskset, "x")
        elif isinstance(taskset, str) and re.fullmatch(r"(0x)?[0-9a-fA-F]+", taskset):
            mask = taskset.lower().removeprefix("0x")
        if not mask or int(mask, 16) == 0:
            raise ValueError("taskset must be a nonzero CPU mask, a hex string such as 'f0' (the "
                             f"big cores of many phones) or an int. Received: taskset={taskset!r}")
    if use_nnapi:
        warnings.warn("NNAPI is deprecated as of Android 15; LiteRT recommends the GPU delegate "
                      "or a vendor NPU accelerator. The NNAPI benchmark still runs.",
                      FutureWarning, stacklevel=3)
    return mask


def _adb(adb_path, serial, *args, timeout, check=True, merge_output=False):
    cmd = [adb_path] + (["-s", serial] if serial else []) + list(args)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise TimeoutError(f"`{shlex.join(cmd)}` did not finish within {timeout} s.") from e
    if check and proc.returncode != 0:
        message = (proc.stderr or "").strip() or (proc.stdout or "").strip()
        raise RuntimeError(f"`{shlex.join(cmd)}` failed with exit code {proc.returncode}: "
                           f"{message}")
    return proc


def _find_adb(adb):
    path = shutil.which(adb)
    if path is None:
        raise FileNotFoundError(
            f"adb was not found (adb={adb!r} is not an executable on PATH). Install the Android "
            "SDK platform-tools (https://developer.android.com/tools/releases/platform-tools, or "
            "`sudo apt-get install adb`) and put adb on PATH, or pass adb='/path/to/adb'.")
    return path


def _pick_serial(adb_path, serial, timeout):
    out = _adb(adb_path, None, "devices", timeout=timeout).stdout
    states = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
            states[parts[0]] = parts[1]
    ready = [s for s, state in states.items() if state == "device"]
    listing = ", ".join(f"{s} ({state})" for s, state in states.items()) or "none"
    if serial is not None:
        if serial not in ready:
            raise ValueError(f"serial must name a device attached and authorized (`adb devices`). "
                             f"Received: serial={serial!r}. Attached: {listing}.")
        return serial
    if not ready:
        raise RuntimeError(f"No Android device is ready (`adb devices` lists: {listing}). Connect "
                           "a phone with USB debugging on and accept its authorization prompt.")
    if len(ready) > 1:
        raise ValueError(f"Several devices are attached: {', '.join(ready)}. Pass serial= to "
                         "choose one.")
    return ready[0]


def _flags(remote_graph, num_threads, num_runs, warmup_runs, use_xnnpack, use_gpu,
           gpu_precision_loss_allowed, gpu_backend, use_nnapi, nnapi_accelerator_name,
           require_full_delegation):
    def b(value):
        return "true" if value else "false"

    flags = [f"--graph={remote_graph}", f"--num_threads={num_threads}",
             f"--num_runs={num_runs}", f"--warmup_runs={warmup_runs}",
             f"--use_xnnpack={b(use_xnnpack)}"]
    if use_gpu:
        flags += ["--use_gpu=true", f"--gpu_precision_loss_allowed={b(gpu_precision_loss_allowed)}"]
        if gpu_backend:
            flags.append(f"--gpu_backend={gpu_backend}")
    if use_nnapi:
        flags.append("--use_nnapi=true")
        if nnapi_accelerator_name:
            flags.append(f"--nnapi_accelerator_name={nnapi_accelerator_name}")
    if require_full_delegation:
        flags.append("--require_full_delegation=true")
    return flags


def _poll_logcat(shell, timeout):
    """Reads ``logcat -d -s tflite`` until the timings line appears; returns the log."""
    deadline = time.monotonic() + timeout
    while True:
        log = shell("logcat", "-d", "-s", "tflite").stdout
        fatal = [msg for msg in _messages(log) if _FATAL.search(msg)]
        if fatal:
            raise RuntimeError(f"The benchmark APK failed: {fatal[0]}\nLast logcat lines:\n"
                               + _tail(log))
        if _DONE.search(log):
            time.sleep(_POLL_SECONDS)  # the memory lines follow the timings line
            return shell("logcat", "-d", "-s", "tflite").stdout
        if time.monotonic() > deadline:
            raise TimeoutError(f"No benchmark result in logcat after {timeout} s. Last logcat "
                               "lines:\n" + _tail(log))
        time.sleep(_POLL_SECONDS)


def run_android(graph, *, serial=None, benchmark_binary=None, benchmark_apk=False, num_threads=4,
                num_runs=50, warmup_runs=10, use_xnnpack=True, use_gpu=False,
                gpu_precision_loss_allowed=True, gpu_backend=None, use_nnapi=False,
                nnapi_accelerator_name=None, require_full_delegation=False, taskset=None,
                adb="adb", model=None, mode=None, macs=None, timeout=600) -> BenchmarkResult:
    """Benchmarks a .tflite graph on an attached Android device with ``benchmark_model``.

    Binary mode pushes ``benchmark_binary`` (the TFLite or LiteRT ``benchmark_model``
    for the phone's ABI) to ``/data/local/tmp`` and runs it with ``adb shell``;
    with ``benchmark_binary=None`` it must already be there. APK mode
    (``benchmark_apk=True``) installs ``benchmark_binary`` (an .apk) when given,
    starts ``BenchmarkModelActivity`` and reads the result from logcat. The pushed
    model is removed afterwards.

    Args:
        graph: path of the .tflite file.
        serial: the device (``adb devices``); None picks the only one attached.
        benchmark_binary: local benchmark_model binary, or .apk in APK mode.
        benchmark_apk: run through the benchmark APK instead of a binary.
        num_threads, num_runs, warmup_runs: passed as ``--num_threads`` etc. The
            tool also runs for at least ``min_secs`` (1 s), so ``num_runs`` of the
            result is the count it reports.
        use_xnnpack: ``--use_xnnpack`` (the CPU delegate; false runs the reference
            kernels).
        use_gpu, gpu_precision_loss_allowed, gpu_backend: the GPU delegate;
            ``gpu_backend`` is ``"cl"``, ``"gl"`` or None (the delegate chooses).
        use_nnapi, nnapi_accelerator_name: the NNAPI delegate (deprecated as of
            Android 15; a ``FutureWarning`` says so).
        require_full_delegation: ``--require_full_delegation=true``: fail rather
            than fall back to the CPU.
        taskset: CPU mask (``"f0"`` or ``0xf0``) to pin the binary with ``taskset``.
        adb: the adb executable.
        model, mode, macs: recorded in the result.
        timeout: seconds for each adb call and for the whole APK run.

    Returns:
        A :class:`BenchmarkResult` with ``target="android"``.

    Example:
        >>> run_android("mobilenet_v2.tflite", benchmark_binary="android_aarch64_benchmark_model",
        ...             use_gpu=True, model="MobileNetV2", mode="float32")  # doctest: +SKIP
    """
    mask = _check_run_args(graph, benchmark_binary, benchmark_apk, num_threads, num_runs,
                           warmup_runs, use_gpu, gpu_backend, use_nnapi, nnapi_accelerator_name,
                           taskset, timeout)
    adb_path = _find_adb(adb)
    serial = _pick_serial(adb_path, serial, timeout)

    def shell(*args, **kwargs):
        return _adb(adb_path, serial, *args, timeout=timeout, **kwargs)

    if benchmark_apk:
        if benchmark_binary is not None:
            shell("install", "-r", "-d", "-g", benchmark_binary)
        elif not shell("shell", "pm", "path", APK_PACKAGE, check=False).stdout.startswith(
                "package:"):
            raise RuntimeError(f"The benchmark APK ({APK_PACKAGE}) is not installed on {serial}. "
                               "Pass benchmark_binary='benchmark_model.apk' to install it.")
    elif benchmark_binary is not None:
        shell("push", benchmark_binary, REMOTE_BINARY)
        shell("shell", "chmod", "+x", REMOTE_BINARY)
    else:
        listing = shell("shell", "ls", REMOTE_BINARY, check=False)
        if listing.returncode != 0 or "No such file" in listing.stdout + listing.stderr:
            raise RuntimeError(f"No {REMOTE_BINARY} on {serial}. Pass benchmark_binary= (the "
                               "benchmark_model binary for the phone's ABI) to push it.")

    remote_graph = f"{REMOTE_DIR}/{re.sub(r'[^A-Za-z0-9._-]', '_', os.path.basename(graph))}"
    flags = _flags(remote_graph, num_threads, num_runs, warmup_runs, use_xnnpack, use_gpu,
                   gpu_precision_loss_allowed, gpu_backend, use_nnapi, nnapi_accelerator_name,
                   require_full_delegation)
    shell("push", graph, remote_graph)
    try:
        if benchmark_apk:
            shell("logcat", "-c")
            command = ["shell", "am", "start", "-S", "-n", APK_ACTIVITY,
                       "--es", "args", '"' + " ".join(flags) + '"']
            shell(*command)
            output = _poll_logcat(shell, timeout)
        else:
            command = ["shell"] + (["taskset", mask] if mask else []) + [REMOTE_BINARY] + flags
            proc = shell(*command, check=False, merge_output=True)
            output = proc.stdout
            if proc.returncode != 0:
                raise RuntimeError(f"benchmark_model failed on {serial} (exit code "
                                   f"{proc.returncode}). Last lines of its output:\n"
                                   + _tail(output))
        parsed = parse_benchmark_output(output)
        props = {key: shell("shell", "getprop", key).stdout.strip()
                 for key in ("ro.product.model", "ro.build.version.release", "ro.board.platform")}
    finally:
        shell("shell", "rm", "-f", remote_graph, check=False)
    return _to_result(parsed, props, graph=graph, serial=serial, command=command,
                      benchmark_apk=benchmark_apk, num_threads=num_threads, num_runs=num_runs,
                      warmup_runs=warmup_runs, use_xnnpack=use_xnnpack, use_gpu=use_gpu,
                      use_nnapi=use_nnapi, model=model, mode=mode, macs=macs)


_DELEGATE_NAMES = {"gpu": "GPU", "nnapi": "NNAPI", "xnnpack": "XNNPACK"}


def _to_result(parsed, props, *, graph, serial, command, benchmark_apk, num_threads, num_runs,
               warmup_runs, use_xnnpack, use_gpu, use_nnapi, model, mode, macs):
    from keras_mobile import __version__

    delegate = ("gpu" if use_gpu else "nnapi" if use_nnapi else
                "xnnpack" if use_xnnpack else "none")
    status = parsed["delegates"].get(_DELEGATE_NAMES.get(delegate), {})
    release = props["ro.build.version.release"]
    nan = float("nan")
    extra = {key: parsed[key] for key in ("p5_ms", "p95_ms", "warmup_mean_ms", "init_memory_mb",
                                          "overall_memory_mb", "throughput_mb_s", "delegates")
             if parsed[key] not in (None, {})}
    extra.update(serial=serial, command=shlex.join(command), requested_num_runs=num_runs,
                 requested_warmup_runs=warmup_runs)
    return BenchmarkResult(
        model=model, mode=mode, graph=os.path.abspath(graph), target="android",
        delegate=delegate, num_threads=num_threads,
        device=f"{props['ro.product.model']} (Android {release}, {props['ro.board.platform']})",
        date=utc_now(),
        versions={"android": release, "keras_mobile": __version__,
                  "benchmark_tool": "benchmark_model APK" if benchmark_apk else "benchmark_model",
                  "output_format": parsed["format"]},
        num_runs=_first(parsed["count"], num_runs),
        warmup_runs=_first(parsed["warmup_count"], warmup_runs),
        model_size_mb=os.path.getsize(graph) / 1e6,
        init_ms=parsed["init_ms"], first_ms=parsed["first_ms"],
        median_ms=parsed["median_ms"], p90_ms=None,
        min_ms=_first(parsed["min_ms"], nan), max_ms=_first(parsed["max_ms"], nan),
        mean_ms=parsed["mean_ms"], std_ms=_first(parsed["std_ms"], nan),
        peak_memory_mb=parsed["peak_memory_mb"], cpu_wall_ratio=None,
        fully_delegated=status.get("fully_delegated"),
        delegate_partitions=status.get("partitions"),
        macs=macs, top1=None, extra=extra)

