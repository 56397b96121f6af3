"""Where a graph's time goes, by XNNPACK / TFLite kernel: ``perf`` samples of LiteRT
invoking the graph, grouped into kernel kinds (GEMM, depthwise convolution, LUT
activations, ...), in milliseconds per invoke.

Two runs of the same graph, ``short`` and ``long`` invokes, are sampled; the
difference of their per-symbol sample counts over the extra invokes is the time of
one invoke (start-up, weight packing and Python are in both runs and cancel). Needs
Linux ``perf`` (Debian's ``linux-perf``) and software clock sampling.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter

# (kind, substrings of the symbol) in matching order; the first match wins.
KINDS = (
    ("TFLite reference kernels (outside XNNPACK)", ("tflite::ops::", "reference_ops",
                                                    "optimized_ops", "reference_integer_ops")),
    ("GEMM: 1x1 conv, dense, matmul", ("_gemm_", "_igemm_", "packw")),
    ("depthwise conv", ("_dwconv_",)),
    ("activations (sigmoid, GELU, hard-swish, LUT)", ("vsigmoid", "_lut_", "vgelu", "vtanh",
                                                      "velu", "vhswish", "vclamp", "vrelu",
                                                      "vlrelu")),
    ("softmax", ("raddstoreexpminusmax", "_rmax_", "softmax")),
    ("elementwise mul / add", ("_vmul", "_vadd", "_vsub", "_vsqrdiff", "_vrsqrt", "_vsqrt")),
    ("mean / reductions", ("_rsum", "_rdsum", "_gavgpool", "_mean")),
    ("int8 <-> float conversions", ("_vcvt",)),
    ("copies, transposes, padding", ("transpose", "memmove", "memcpy", "memset", "_pad_",
                                     "_copy")),
)
OTHER = "other runtime"
# "    27.35%          1268  [.] xnn_qs8_..._ukernel   -      -" (percent, samples, symbol)
_LINE = re.compile(r"^\s*[\d.]+%\s+(\d+)\s+\[\.\]\s+(.+?)(?:\s+-\s+-)?\s*$")


def available() -> bool:
    """Whether ``perf record -e cpu-clock`` works here."""
    if shutil.which("perf") is None:
        return False
    probe = subprocess.run(["perf", "record", "-e", "cpu-clock", "-o", os.devnull, "true"],
                           capture_output=True, text=True)
    return probe.returncode == 0


def kind(symbol: str) -> str | None:
    """The kernel kind of a sampled symbol; None outside the runtime's kernels."""
    for name, parts in KINDS:
        if any(p in symbol for p in parts):
            return name
    return OTHER if symbol.startswith(("xnn_", "tflite::")) else None


def parse_samples(report_text: str) -> Counter:
    """Sample counts per symbol from ``perf report --stdio --sort symbol -n``."""
    counts = Counter()
    for line in report_text.splitlines():
        match = _LINE.match(line)
        if match:
            counts[match.group(2)] += int(match.group(1))
    return counts


def profile(graph: str, *, short: int = 50, long: int = 550, num_threads: int = 1,
            frequency: int = 2000) -> dict[str, float]:
    """Milliseconds per invoke of ``graph`` by kernel kind (the table above), from the
    extra ``long - short`` invokes; the values sum to about the invoke's time."""
    if not 0 < short < long:
        raise ValueError(f"profile needs 0 < short < long. Received: short={short}, "
                         f"long={long}")
    if not available():
        raise RuntimeError("perf is not available (install Debian's linux-perf; "
                           "`perf record -e cpu-clock true` must work).")
    counts = []
    with tempfile.TemporaryDirectory() as folder:
        for invokes in (short, long):
            data = os.path.join(folder, f"{invokes}.data")
            subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(frequency),
                            "-o", data, sys.executable, "-c", _LOOP, os.fspath(graph),
                            str(invokes), str(num_threads)],
                           check=True, capture_output=True)
            text = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort",
                                   "symbol", "-n"], check=True, capture_output=True,
                                  text=True).stdout
            counts.append(parse_samples(text))
    return per_invoke(counts[0], counts[1], long - short, frequency)


def bound(float_ms: dict, int8_ms: dict) -> float:
    """The int8 speed-up these kernels allow: float32 time over the time with every kernel
    kind at the faster of its float32 and int8 times (conversions between them free)."""
    kinds = set(float_ms) | set(int8_ms)
    best = sum(min(float_ms.get(k, 0.0), int8_ms.get(k, 0.0)) for k in kinds)
    return sum(float_ms.values()) / best


def per_invoke(short: Counter, long: Counter, extra_invokes: int,
               frequency: int) -> dict[str, float]:
    """ms per invoke by kind from the two runs' sample counts."""
    ms = Counter()
    for symbol in set(short) | set(long):
        name = kind(symbol)
        if name is not None:
            ms[name] += (long[symbol] - short[symbol]) * 1000.0 / frequency / extra_invokes
    order = [name for name, _ in KINDS] + [OTHER]
    return {name: max(ms[name], 0.0) for name in order if name in ms}


_LOOP = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=int(sys.argv[3]))
it.allocate_tensors()
detail = it.get_input_details()[0]
info = np.iinfo(detail["dtype"]) if np.issubdtype(detail["dtype"], np.integer) else None
x = np.random.default_rng(0).uniform(info.min if info else 0, info.max if info else 255,
                                     detail["shape"]).astype(detail["dtype"])
it.set_tensor(detail["index"], x)
for _ in range(int(sys.argv[2])):
    it.invoke()
"""
