"""The roofline of a model on this host: arithmetic intensity against the measured peaks.

* :func:`measure_peaks` times small synthetic graphs in the real runtime (LiteRT +
  XNNPACK, :func:`keras_mobile.benchmark.host.run_many`): the compute peak is the best
  MAC/ms of a few large 1x1 convolutions (GEMMs), the memory peak the best bytes/ms of
  large elementwise ADDs (bytes = both inputs + the output).
* :func:`blocks` groups :func:`keras_mobile.profiling.profile`'s layers by block scope
  (``stem``, ``block1a``, ..., ``top``, ``head``) and kernel kind (``gemm``,
  ``depthwise``, ``attention``, ``elementwise``), with the bytes the converted graph
  moves.
* :func:`report` is the markdown section of the latency report: where each block sits
  on the roofline, the attainable rate per kind and, with a converted graph and Linux
  ``perf``, the achieved rate per kind (:mod:`keras_mobile.benchmark.kernels`).

Bytes model (per image, batch 1): every op reads its inputs and parameters once and
writes its output once, in the mode's element size (float32: 4 bytes; int8: 1 byte per
activation and weight element; int32 biases and quantization scales are ignored).
With ``fused=True`` (default) the ops XNNPACK and the converter fuse move nothing:
BatchNormalization right after a convolution or dense layer (folded into its weights),
ReLU / ReLU6 right after one (a fused clamp), ZeroPadding2D read only by convolutions
(fused into their padding), and Identity / Dropout (aliases). An attention layer (a
layer with a ``macs`` method, :class:`keras_mobile.layers.WindowAttention`) is traced
op by op: its matmuls, and the transposes, slices, scaling and softmax around them, each
read and write their tensors (reshapes are free). Caches are not modelled, so small
tensors may run faster than the memory line says.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tempfile

from keras_mobile import profiling

MODES = ("float32", "int8")
ELEMENT_BYTES = {"float32": 4, "int8": 1}
KINDS = ("gemm", "depthwise", "attention", "elementwise")
# Default synthetic graphs of measure_peaks: (H, W, Cin, Cout) 1x1 convolutions and
# (H, W, C) ADDs of two tensors, batch 1.
GEMM_SHAPES = ((28, 28, 256, 256), (14, 14, 512, 512))
ELEMENTWISE_SHAPES = ((256, 256, 64),)  # 16 MiB per float32 tensor: beyond the caches
CACHE_SHAPES = ((64, 64, 64),)  # 1 MiB per float32 tensor

_BLOCK = re.compile(r"^(stem|top|block\d+[a-z]*)(?:_|$)")
_ALIASES = ("Identity", "Dropout", "InputLayer")
_FOLDS_INTO = ("Conv2D", "DepthwiseConv2D", "Dense")
_PERF_GEMM = "GEMM: 1x1 conv, dense, matmul"
_PERF_DEPTHWISE = "depthwise conv"
_PERF_ATTENTION_EXTRAS = ("softmax", "copies, transposes, padding")


def check_mode(mode) -> str:
    if mode not in MODES:
        raise ValueError(f'mode must be "float32" or "int8". Received: mode={mode!r}')
    return mode


@dataclasses.dataclass(frozen=True)
class Peaks:
    """This host's measured roofline: ``macs_per_ms`` (compute peak, GEMM) and
    ``bytes_per_ms`` (memory bandwidth, elementwise ops on tensors larger than the caches),
    with the runtime's threads and mode. ``cache_bytes_per_ms``: the same on tensors that
    fit in the caches (the roofline does not use it; None when not measured).
    ``measurements``: MAC/ms or bytes/ms of each synthetic graph, by name."""

    macs_per_ms: float
    bytes_per_ms: float
    num_threads: int = 1
    mode: str = "float32"
    machine: str = ""
    date: str = ""
    cache_bytes_per_ms: float | None = None
    measurements: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        check_mode(self.mode)
        for name in ("macs_per_ms", "bytes_per_ms"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number. "
                                 f"Received: {name}={value!r}")

    @property
    def ridge(self) -> float:
        """The intensity (MAC/byte) where the memory line meets the compute peak."""
        return self.macs_per_ms / self.bytes_per_ms

    def attainable(self, intensity: float) -> float:
        """The roofline's MAC/ms at ``intensity`` MAC/byte: min(compute peak,
        intensity x bandwidth)."""
        return min(self.macs_per_ms, intensity * self.bytes_per_ms)

    def bound(self, intensity: float) -> str:
        """``"memory"`` below the ridge point, else ``"compute"``."""
        return "memory" if intensity < self.ridge else "compute"

    def ms(self, macs: float, bytes_moved: float) -> float:
        """The roofline time of ``macs`` MACs moving ``bytes_moved`` bytes: the larger of
        the compute time and the memory time."""
        return max(macs / self.macs_per_ms, bytes_moved / self.bytes_per_ms)

    def __str__(self):
        return (f"compute peak {self.macs_per_ms / 1e6:.2f} GMAC/s, memory "
                f"{self.bytes_per_ms / 1e6:.2f} GB/s, ridge {self.ridge:.1f} MAC/B "
                f"({self.mode}, {self.num_threads} thread(s), {self.machine or 'this host'})")


@dataclasses.dataclass(frozen=True)
class Cost:
    """MACs and bytes moved of some layers (``layers``: how many)."""

    macs: int = 0
    bytes_moved: int = 0
    layers: int = 0

    @property
    def intensity(self) -> float:
        """MACs per byte moved (0 when nothing moves)."""
        return self.macs / self.bytes_moved if self.bytes_moved else 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.bytes_moved + other.bytes_moved,
                    self.layers + other.layers)


@dataclasses.dataclass(frozen=True)
class Block:
    """One block scope of a model: totals and the split by kernel kind (``kinds``:
    kind -> :class:`Cost`, only the kinds present). For ``attention``,
    ``attention_matmul`` is the part of its cost in the two matmuls alone."""

    name: str
    macs: int
    bytes_moved: int
    kinds: dict
    attention_matmul: Cost = Cost()

    @property
    def intensity(self) -> float:
        return self.macs / self.bytes_moved if self.bytes_moved else 0.0

    @property
    def dominant(self) -> str:
        """The kind with the most MACs (``elementwise`` when there are none)."""
        with_macs = [(cost.macs, kind) for kind, cost in self.kinds.items() if cost.macs]
        return max(with_macs)[1] if with_macs else "elementwise"


def classify(layer) -> str:
    """The kernel kind of a layer: ``gemm`` (Conv2D of any kernel size, Dense),
    ``depthwise`` (DepthwiseConv2D), ``attention`` (a layer with a ``macs`` method),
    else ``elementwise`` (normalization, activations, adds, padding, pooling, ...)."""
    name = layer.__class__.__name__
    if name == "DepthwiseConv2D":
        return "depthwise"
    if name in ("Conv2D", "Dense"):
        return "gemm"
    if hasattr(layer, "macs") and callable(layer.macs):
        return "attention"
    return "elementwise"


def scopes(names: list[str]) -> list[str]:
    """The block scope of each layer name, in execution order: ``stem``, ``top`` or
    ``block{stage}{letter}`` from the ``<scope>_<part>`` prefix; an unscoped layer before
    the first scoped one is ``stem``, after the last one ``head``, and in between joins
    the scope before it (e.g. a feature tap ``P3`` after ``block3c``)."""
    matches = [_BLOCK.match(n) for n in names]
    scoped = [i for i, m in enumerate(matches) if m]
    last = scoped[-1] if scoped else -1
    out, previous = [], "stem"
    for i, match in enumerate(matches):
        if match:
            previous = match.group(1)
        out.append(previous if i <= last else "head")
    return out


def blocks(model, mode: str = "float32", *, fused: bool = True) -> list[Block]:
    """The model's cost per block scope, in execution order (see the module docstring
    for the bytes model). The blocks' MACs sum to ``profile(model).macs``.

    Raises:
        ValueError: a mode other than ``"float32"`` or ``"int8"``.
        TypeError: ``model`` is not a functional ``keras.Model``.
    """
    check_mode(mode)
    prof = profiling.profile(model)  # raises TypeError for a non-functional model
    size = ELEMENT_BYTES[mode]
    calls = [c for c in profiling._calls(model) if c[0].__class__.__name__ != "InputLayer"]
    free = _fused_layers(model, calls) if fused else set()
    by_name = {row.name: row for row in prof.layers}
    order, costs, matmul = [], {}, {}
    seen, unique = set(), []
    for call in calls:
        if id(call[0]) not in seen:  # a shared layer: its row holds every call's cost
            seen.add(id(call[0]))
            unique.append(call)
    names = scopes([layer.name for layer, _, _ in unique])
    for (layer, inputs, _), name in zip(unique, names, strict=True):
        row = by_name[layer.name]
        kind = classify(layer)
        if id(layer) in free or layer.__class__.__name__ in _ALIASES:
            bytes_moved = 0
        elif kind == "attention" and fused:
            traffic = _attention_traffic(layer, inputs, size)
            if traffic is None:
                bytes_moved = row.bytes_moved // 4 * size
            else:
                mm_bytes, other_bytes = traffic
                bytes_moved = mm_bytes + other_bytes
                matmul[name] = matmul.get(name, Cost()) + Cost(row.macs, mm_bytes, 1)
        else:
            bytes_moved = row.bytes_moved // 4 * size
        if name not in costs:
            order.append(name)
            costs[name] = {}
        costs[name][kind] = costs[name].get(kind, Cost()) + Cost(row.macs, bytes_moved, 1)
    out = []
    for name in order:
        kinds = {k: costs[name][k] for k in KINDS if k in costs[name]}
        total = sum(kinds.values(), Cost())
        out.append(Block(name, total.macs, total.bytes_moved, kinds,
                         matmul.get(name, Cost())))
    return out


def by_kind(rows: list[Block]) -> dict[str, Cost]:
    """The blocks' costs summed per kind (``attention_matmul``: the attention layers'
    matmuls alone, when traced)."""
    out = {}
    for row in rows:
        for kind, cost in row.kinds.items():
            out[kind] = out.get(kind, Cost()) + cost
    out = {k: out[k] for k in KINDS if k in out}
    matmul = sum((row.attention_matmul for row in rows), Cost())
    if matmul.layers:
        out["attention_matmul"] = matmul
    return out


def _fused_layers(model, calls) -> set:
    """ids of the layers the converted graph does not run as ops of their own."""
    producer, consumers = {}, {}
    for layer, inputs, output in calls:
        producer[id(output)] = layer
        for t in inputs:
            consumers.setdefault(id(t), []).append(layer)
    free = set()
    for layer, inputs, output in calls:
        kind = layer.__class__.__name__
        source = producer.get(id(inputs[0])) if len(inputs) == 1 else None
        source_kind = source.__class__.__name__ if source is not None else None
        if kind == "BatchNormalization" and source_kind in _FOLDS_INTO:
            free.add(id(layer))
        elif _is_relu(layer) and source is not None and (
                source_kind in _FOLDS_INTO or id(source) in free and
                source_kind == "BatchNormalization"):
            free.add(id(layer))
        elif kind == "ZeroPadding2D":
            readers = consumers.get(id(output), [])
            if readers and all(r.__class__.__name__ in ("Conv2D", "DepthwiseConv2D")
                               for r in readers):
                free.add(id(layer))
    return free


def _is_relu(layer) -> bool:
    kind = layer.__class__.__name__
    if kind == "ReLU":
        slope = float(getattr(layer, "negative_slope", 0.0) or 0.0)
        threshold = float(getattr(layer, "threshold", 0.0) or 0.0)
        return slope == 0.0 and threshold == 0.0 and layer.max_value in (None, 6, 6.0)
    if kind == "Activation":
        return getattr(layer.activation, "__name__", "") in ("relu", "relu6")
    return False


def _attention_traffic(layer, inputs, size: int) -> tuple[int, int] | None:
    """(bytes of the matmuls, bytes of every other op) of one attention call, from its
    TensorFlow graph at batch 1; None when it cannot be traced."""
    try:
        import tensorflow as tf

        specs = [tf.TensorSpec((1, *t.shape[1:]), tf.float32) for t in inputs]
        graph = tf.function(lambda *xs: layer.call(list(xs))).get_concrete_function(
            *specs).graph
    except Exception:  # a layer this tracer does not understand: profile's bytes
        return None
    free = ("Placeholder", "Const", "Identity", "Reshape", "NoOp", "ReadVariableOp",
            "Shape", "Pack")
    matmul = other = 0
    for op in graph.get_operations():
        if op.type in free:
            continue
        tensors = [t for t in op.inputs if t.op.type != "Const"] + list(op.outputs)
        elements = 0
        for t in tensors:
            if t.shape.rank is None or not t.shape.is_fully_defined() or t.dtype == tf.int32:
                continue
            elements += math.prod(t.shape.as_list())
        if op.type in ("BatchMatMulV2", "BatchMatMulV3", "BatchMatMul", "MatMul"):
            matmul += elements * size
        else:
            other += elements * size
    return matmul, other


# --------------------------------------------------------------------------- peaks


def measure_peaks(num_threads: int = 1, mode: str = "float32", workdir=None, *,
                  gemm_shapes=GEMM_SHAPES, elementwise_shapes=ELEMENTWISE_SHAPES,
                  cache_shapes=CACHE_SHAPES, num_runs: int = 30, warmup_runs: int = 5,
                  rounds: int = 3) -> Peaks:
    """Measure this host's compute and memory peaks in LiteRT + XNNPACK.

    Writes one .tflite graph per shape (in ``workdir``, else a temporary folder that is
    removed), batch 1: a 1x1 convolution ``(H, W, Cin, Cout)`` per ``gemm_shapes`` (MACs
    = H*W*Cin*Cout) in ``mode``, and an ADD of two ``(H, W, C)`` tensors per
    ``elementwise_shapes`` (bytes = 3*H*W*C elements; tensors far larger than the
    caches) and per ``cache_shapes`` (tensors that fit in the caches; ``()`` to skip).
    int8 graphs take and return int8 tensors, calibrated on random data. In int8 the
    ADDs run in int8 and in float32 and the better bytes/ms counts: XNNPACK's int8 ADD
    rescales every element and is limited by that arithmetic before the memory.
    All graphs are timed together in one LiteRT process (median of ``num_runs``
    invokes, interleaved in ``rounds``); each peak is the best graph of its group.
    """
    check_mode(mode)
    for name, shapes, length, empty in (("gemm_shapes", gemm_shapes, 4, False),
                                        ("elementwise_shapes", elementwise_shapes, 3, False),
                                        ("cache_shapes", cache_shapes, 3, True)):
        if (not shapes and not empty) or any(
                len(s) != length or any(isinstance(d, bool) or not isinstance(d, int) or d < 1
                                        for d in s) for s in shapes):
            raise ValueError(f"{name} must be a {'' if empty else 'non-empty '}list of "
                             f"{length} positive ints each. Received: {name}={shapes!r}")
    from keras_mobile.benchmark import host
    from keras_mobile.benchmark.result import utc_now

    add_modes = ("int8", "float32") if mode == "int8" else (mode,)
    with tempfile.TemporaryDirectory() as scratch:
        folder = os.fspath(workdir) if workdir is not None else scratch
        os.makedirs(folder, exist_ok=True)
        graphs, work = [], []
        for h, w, cin, cout in gemm_shapes:
            path = os.path.join(folder, f"peak_gemm_{h}x{w}x{cin}to{cout}_{mode}.tflite")
            _write_conv(path, (h, w, cin), cout, mode)
            graphs.append(path)
            work.append(("gemm", f"conv1x1 {h}x{w}x{cin}->{cout} {mode}", h * w * cin * cout))
        for group, shapes in (("memory", elementwise_shapes), ("cache", cache_shapes)):
            for h, w, c in shapes:
                for add_mode in add_modes:
                    path = os.path.join(folder, f"peak_add_{h}x{w}x{c}_{add_mode}.tflite")
                    _write_add(path, (h, w, c), add_mode)
                    graphs.append(path)
                    work.append((group, f"add {h}x{w}x{c} {add_mode}",
                                 3 * h * w * c * ELEMENT_BYTES[add_mode]))
        results = host.run_many(graphs, num_threads=num_threads, num_runs=num_runs,
                                warmup_runs=warmup_runs, rounds=min(rounds, num_runs))
    measurements = {}
    for (_, label, amount), result in zip(work, results, strict=True):
        measurements[label] = amount / result.median_ms

    def best(group):
        values = [measurements[label] for g, label, _ in work if g == group]
        return max(values) if values else None

    return Peaks(macs_per_ms=best("gemm"), bytes_per_ms=best("memory"),
                 num_threads=num_threads, mode=mode, machine=host.machine(), date=utc_now(),
                 cache_bytes_per_ms=best("cache"), measurements=measurements)


def _write_conv(path, shape, filters, mode):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(0, 0.05, (1, 1, shape[-1], filters)).astype("float32"))
    bias = tf.constant(rng.normal(0, 0.05, (filters,)).astype("float32"))

    def conv(x):
        return tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "VALID"), bias)

    _write(path, conv, [shape], mode)


def _write_add(path, shape, mode):
    _write(path, lambda a, b: a + b, [shape, shape], mode)


def _write(path, function, shapes, mode, samples: int = 4):
    import numpy as np
    import tensorflow as tf

    from keras_mobile.files import atomic_path

    specs = [tf.TensorSpec((1, *s), tf.float32) for s in shapes]
    concrete = tf.function(function).get_concrete_function(*specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], tf.Module())
    if mode == "int8":
        rng = np.random.default_rng(1)
        data = [[rng.uniform(-1, 1, (1, *s)).astype("float32") for s in shapes]
                for _ in range(samples)]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter(data)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    flatbuffer = converter.convert()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(flatbuffer)


# --------------------------------------------------------------------------- report


def achieved(rows: list[Block], kernel_ms: dict) -> dict[str, tuple[float, float]]:
    """Achieved MAC/ms per kind from ``kernel_ms`` (ms per invoke by perf kernel kind,
    :func:`keras_mobile.benchmark.kernels.profile`): kind -> (ms, MAC/ms).

    XNNPACK runs the attention matmuls in its GEMM kernels, so ``gemm`` is measured
    over the convolution, dense and attention-matmul MACs together; ``attention``'s
    effective rate charges its matmuls at that GEMM rate plus all softmax and all
    copy / transpose / pad time (pads of other layers included: a lower bound)."""
    kinds = by_kind(rows)
    gemm_macs = kinds.get("gemm", Cost()).macs + kinds.get("attention", Cost()).macs
    out = {}
    gemm_ms = kernel_ms.get(_PERF_GEMM, 0.0)
    if gemm_ms > 0 and gemm_macs:
        out["gemm"] = (gemm_ms, gemm_macs / gemm_ms)
    dw_ms = kernel_ms.get(_PERF_DEPTHWISE, 0.0)
    if dw_ms > 0 and "depthwise" in kinds:
        out["depthwise"] = (dw_ms, kinds["depthwise"].macs / dw_ms)
    if "attention" in kinds and "gemm" in out:
        extras = sum(kernel_ms.get(k, 0.0) for k in _PERF_ATTENTION_EXTRAS)
        ms = kinds["attention"].macs / out["gemm"][1] + extras
        out["attention"] = (ms, kinds["attention"].macs / ms)
    total = sum(kernel_ms.values())
    if total > 0:
        out["model"] = (total, sum(r.macs for r in rows) / total)
    return out


def report(model, peaks: Peaks, mode: str = "float32", graph=None, *, rows=None,
           kernel_ms: dict | None = None, perf_invokes: tuple[int, int] = (20, 120)) -> str:
    """The roofline section of the latency report, in markdown.

    ``rows``: :func:`blocks`' rows (computed when None). ``graph``: the model converted
    to .tflite in ``mode``; when given and ``perf`` works here
    (:func:`keras_mobile.benchmark.kernels.available`) the achieved MAC/ms per kind is
    measured (``perf_invokes``: the short and long runs of
    :func:`keras_mobile.benchmark.kernels.profile`). ``kernel_ms``: such a profile
    already measured (then ``graph`` is not profiled again).
    """
    check_mode(mode)
    if not isinstance(peaks, Peaks):
        raise TypeError(f"peaks must be a Peaks (measure_peaks). Received: {type(peaks)!r}")
    if peaks.mode != mode:
        raise ValueError(f"peaks were measured in mode={peaks.mode!r}, the report is for "
                         f"mode={mode!r}. Measure the peaks in the report's mode.")
    rows = blocks(model, mode) if rows is None else rows
    note = None
    if kernel_ms is None and graph is not None:
        from keras_mobile.benchmark import kernels

        if kernels.available():
            kernel_ms = kernels.profile(graph, short=perf_invokes[0], long=perf_invokes[1],
                                        num_threads=peaks.num_threads)
        else:
            note = ("Achieved rates not measured: Linux `perf` is not available here "
                    "(`perf record -e cpu-clock true` must work; Debian's linux-perf).")
    elif kernel_ms is None:
        note = "Achieved rates not measured: no converted graph was given."
    cache = ""
    if peaks.cache_bytes_per_ms:
        cache = (f" On tensors that fit in the caches the same ADD moves "
                 f"{peaks.cache_bytes_per_ms:,.0f} bytes/ms (ridge "
                 f"{peaks.macs_per_ms / peaks.cache_bytes_per_ms:.1f} MAC/byte), so small "
                 f"layers can beat the memory line.")
    total_macs = sum(r.macs for r in rows) or 1
    total_bytes = sum(r.bytes_moved for r in rows)
    lines = [
        f"## Roofline: {model.name} ({mode}, {peaks.num_threads} thread(s))",
        "",
        f"Peaks measured on {peaks.machine or 'this host'} ({peaks.date or 'undated'}), "
        f"LiteRT + XNNPACK, {mode}: compute {peaks.macs_per_ms:,.0f} MAC/ms "
        f"(1x1 convolutions), memory {peaks.bytes_per_ms:,.0f} bytes/ms (elementwise ADD); "
        f"ridge point {peaks.ridge:.1f} MAC/byte.{cache} Bytes: {ELEMENT_BYTES[mode]} per "
        f"element, each op reading its inputs and weights and writing its output once, "
        f"fused BatchNorm / ReLU / padding free.",
        "",
        "| block | dominant kind | MACs (M) | share of MACs | bytes (KiB) | intensity "
        "(MAC/B) | attainable (MAC/ms) | bound | roofline ms |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    roofline_ms = 0.0
    for r in rows:
        ms = sum(peaks.ms(c.macs, c.bytes_moved) for c in r.kinds.values())
        roofline_ms += ms
        attainable = peaks.attainable(r.intensity)
        lines.append(f"| {r.name} | {r.dominant} | {r.macs / 1e6:.2f} | "
                     f"{r.macs / total_macs:.1%} | {r.bytes_moved / 1024:,.0f} | "
                     f"{r.intensity:.2f} | {attainable:,.0f} | {peaks.bound(r.intensity)} | "
                     f"{ms:.3f} |")
    lines.append(f"| **total** | | {total_macs / 1e6:.2f} | 100% | {total_bytes / 1024:,.0f} | "
                 f"{total_macs / total_bytes if total_bytes else 0:.2f} | | | "
                 f"**{roofline_ms:.2f}** |")
    lines += ["", "Roofline ms: each kind of a block at its own roofline time "
              "(max of MACs / compute peak and bytes / bandwidth), summed: the latency the "
              "roofline predicts with every tensor streamed from memory (tensors that stay "
              "in the caches can beat it).", ""]
    kinds = by_kind(rows)
    rates = achieved(rows, kernel_ms) if kernel_ms else {}
    if "model" not in rates:  # an empty kernel profile: nothing was sampled
        rates = {}
    header = ("| kind | MACs (M) | bytes (KiB) | intensity (MAC/B) | attainable (MAC/ms) | "
              "of compute peak | bound | roofline ms |")
    rule = "|---|---:|---:|---:|---:|---:|---|---:|"
    if rates:
        header += " perf ms | achieved (MAC/ms) | of compute peak |"
        rule += "---:|---:|---:|"
    lines += [header, rule]
    for kind, cost in kinds.items():
        label = "attention (matmuls only)" if kind == "attention_matmul" else kind
        attainable = peaks.attainable(cost.intensity)
        line = (f"| {label} | {cost.macs / 1e6:.2f} | {cost.bytes_moved / 1024:,.0f} | "
                f"{cost.intensity:.2f} | {attainable:,.0f} | "
                f"{attainable / peaks.macs_per_ms:.0%} | {peaks.bound(cost.intensity)} | "
                f"{peaks.ms(cost.macs, cost.bytes_moved):.3f} |")
        if rates:
            ms, rate = rates.get(kind, (None, None))
            line += (f" {ms:.2f} | {rate:,.0f} | {rate / peaks.macs_per_ms:.0%} |"
                     if rate else " | | |")
        lines.append(line)
    lines.append("")
    attention_note = (" XNNPACK runs the attention matmuls in its GEMM kernels, so the "
                      "gemm row's rate covers them too; attention's effective rate charges "
                      "its matmuls at that rate plus all softmax and copy / transpose / pad "
                      "time." if "attention" in kinds else "")
    if rates:
        lines += [
            f"Achieved: perf samples of LiteRT invoking the graph, "
            f"{sum(kernel_ms.values()):.2f} ms per invoke over all kernels "
            f"({rates['model'][1]:,.0f} MAC/ms over the whole model).{attention_note}",
            "", "| perf kernel kind | ms per invoke |", "|---|---:|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in kernel_ms.items()]
        lines.append("")
    elif note:
        lines += [note, ""]
    lines += _why(kinds, peaks)
    return "\n".join(lines) + "\n"


def _why(kinds: dict, peaks: Peaks) -> list[str]:
    """The one-paragraph reading of the kind table."""
    gemm = kinds.get("gemm")
    parts = []
    if gemm is None:
        return []
    for kind, what in (("depthwise", "a depthwise convolution does k*k MACs per output "
                        "element, so it reads and writes about as many bytes as it does "
                        "MACs"),
                       ("attention", "attention moves its score matrix (written by Q.K^T, "
                        "read and written by softmax, read by A.V) and relayouts its queries, "
                        "keys, values and output into windows and heads with transposes")):
        cost = kinds.get(kind)
        if cost is None or not cost.bytes_moved:
            continue
        ratio = peaks.attainable(cost.intensity) / peaks.attainable(gemm.intensity)
        parts.append(f"{kind} sits at {cost.intensity:.2f} MAC/B against gemm's "
                     f"{gemm.intensity:.2f}: the roofline allows it {ratio:.0%} of the gemm "
                     f"layers' rate ({what})")
    if not parts:
        return []
    return ["Why: " + "; ".join(parts) + ". Below the ridge point "
            f"({peaks.ridge:.1f} MAC/B) a kernel is memory bound whatever its arithmetic.", ""]


def plot(rows: list[Block], peaks: Peaks, path, *, title: str | None = None) -> str:
    """A log-log roofline chart as PNG at ``path`` (written atomically): the compute and
    memory lines, each block at (intensity, attainable MAC/ms) colored by its dominant
    kind, and each kind's total as a larger marker. Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_mobile.files import atomic_path

    path = os.fspath(path)
    if not path.endswith(".png"):
        raise ValueError(f"path must end with .png. Received: path={path!r}")
    colors = {"gemm": "tab:blue", "depthwise": "tab:orange", "attention": "tab:red",
              "elementwise": "tab:gray", "attention_matmul": "tab:purple"}
    points = [r.intensity for r in rows if r.intensity > 0]
    kinds = by_kind(rows)
    points += [c.intensity for c in kinds.values() if c.intensity > 0]
    low = min(points + [peaks.ridge]) / 4
    high = max(points + [peaks.ridge]) * 4
    figure, axes = plt.subplots(figsize=(7, 4.5))
    try:
        xs = [low * (high / low) ** (i / 200) for i in range(201)]
        axes.plot(xs, [peaks.attainable(x) for x in xs], color="black", lw=1.5,
                  label=f"roofline (ridge {peaks.ridge:.1f} MAC/B)")
        if peaks.cache_bytes_per_ms:
            axes.plot(xs, [min(peaks.macs_per_ms, x * peaks.cache_bytes_per_ms) for x in xs],
                      color="black", lw=1, ls="--", label="roofline, cache-resident tensors")
        for r in rows:
            if r.intensity > 0:
                axes.scatter(r.intensity, peaks.attainable(r.intensity), s=14,
                             color=colors[r.dominant], alpha=0.6)
        for kind, cost in kinds.items():
            if cost.intensity > 0:
                axes.scatter(cost.intensity, peaks.attainable(cost.intensity), s=80,
                             marker="D", color=colors[kind], edgecolor="black", label=kind)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("arithmetic intensity (MAC/byte)")
        axes.set_ylabel("attainable MAC/ms")
        axes.set_title(title or f"Roofline, {peaks.mode}, {peaks.num_threads} thread(s)")
        axes.legend(fontsize=8, loc="lower right")
        axes.grid(True, which="both", alpha=0.3)
        figure.tight_layout()
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(figure)
    return path
