"""Will the TFLite GPU delegate take the whole model? A static check from the delegate's rules.

The rules are the GPU delegate's own, read from google-ai-edge/LiteRT at commit
f67457790c9c2ab67347d6fe53270e8d3df20868 (snapshot of 2026-08-21):

- ``tflite/delegates/gpu/common/model_builder.cc`` (last changed in 2bd0c6fa): the op switch
  in ``NewOperationParser`` (an op without a parser is not supported), each parser's
  ``CheckMaxSupportedOpVersion``, ``Parse``-time requirements, and ``GetOpsToReplace``'s
  ``IsAllAllowedTensors`` (rejects any input/output of rank >= 5, and non-constant tensors
  whose type is not float32/float16, or int8/uint8 when quantized models are allowed).
- ``tflite/tools/versioning/gpu_compatibility.cc`` (last changed in 297707cb):
  ``CheckGpuDelegateCompatibility``, which every parser's ``IsSupported`` calls with
  ``GpuCompatibilityFlags::kStandard``.
- ``tflite/delegates/gpu/common/model_builder_helper.cc``: ``ExtractTensorShape`` maps rank
  1-4 to BHWC and fails on any other rank.
- ``tflite/core/subgraph.cc`` ``ModifyGraphWithDelegateImpl``: a delegate without
  ``kTfLiteDelegateFlagsAllowDynamicTensors`` (the GPU delegate sets none) is not applied to
  a graph with dynamic-sized tensors, and the graph is immutable after it is applied.

``tf.lite.experimental.Analyzer(..., gpu_compatibility=True)`` runs only
``CheckGpuDelegateCompatibility``: it misses the rank, type and version checks above, which
is why it calls a 6-D TRANSPOSE or a 5-D BATCH_MATMUL compatible.

A model is compatible when every op of the main subgraph passes (the delegate then takes the
whole graph in one partition). Checks that need runtime values or graph context the
flatbuffer does not give are listed as "not encoded" next to the table.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

from keras_mobile.tflite.inspect import FLEX_PREFIX, Graph, Op, Tensor, parse_subgraph, read_model

SOURCE = "google-ai-edge/LiteRT@f67457790c9c2ab67347d6fe53270e8d3df20868"
_SIGN_BIT = 5  # ActivationFunctionType.SIGN_BIT, the one fused activation refused
_FLOATS = ("FLOAT32", "FLOAT16")
_QUANTIZED = ("INT8", "UINT8")


class GpuIssue(NamedTuple):
    """Why the delegate will not take an op (``op_index`` None: the whole model)."""

    op_index: int | None
    op_name: str | None
    reason: str


@dataclasses.dataclass(frozen=True)
class GpuReport:
    """The verdict, the blocking issues, and non-blocking notes."""

    compatible: bool
    issues: tuple[GpuIssue, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"compatible": self.compatible, "issues": [i._asdict() for i in self.issues],
                "notes": list(self.notes), "source": SOURCE}

    def __str__(self) -> str:
        lines = ["GPU delegate: " + ("compatible" if self.compatible
                                    else f"NOT compatible ({len(self.issues)} issues)")]
        for issue in self.issues[:12]:
            where = "model" if issue.op_index is None else f"op {issue.op_index} {issue.op_name}"
            lines.append(f"  - {where}: {issue.reason}")
        if len(self.issues) > 12:
            lines.append(f"  - ... {len(self.issues) - 12} more")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


class OpRule(NamedTuple):
    """What the delegate requires of one op (None: not checked by the source)."""

    max_version: int | None = None  # the parser's CheckMaxSupportedOpVersion
    num_inputs: tuple[int, ...] | None = None  # allowed numbers of inputs
    runtime_inputs: tuple[int, ...] | None = None  # allowed numbers of non-constant inputs
    const_inputs: tuple[int, ...] = ()  # input positions that must be constant
    input_ranks: tuple[int, ...] | None = None  # allowed ranks of input 0
    check: str | None = None  # an op-specific check in _CHECKS


_UNARY = OpRule(2, num_inputs=(1,), runtime_inputs=(1,))  # CheckInputsConstsOutputs(1, 0, 1)
_BINARY = OpRule(2, num_inputs=(2,), runtime_inputs=(1, 2))  # (2 runtime) or (1 + 1 const)
_LOGICAL = _BINARY._replace(check="logical")
_REDUCE = OpRule(num_inputs=(2,), runtime_inputs=(1,), const_inputs=(1,), check="axes_int32")
_RELU = OpRule(2)  # ReLUOperationParser::IsSupported checks the version only
_POOL = OpRule(2, runtime_inputs=(1,), check="pool")
_PAD = OpRule(2, runtime_inputs=(1,), const_inputs=(1,), check="pad")

# Builtin ops with a parser in NewOperationParser (model_builder.cc, LiteRT@f6745779), with
# the parser's max version (ElementwiseOperationParser: MUL 3, others 2) and the checks of
# CheckGpuDelegateCompatibility (gpu_compatibility.cc) and of Parse. Not encoded (they need
# values or topology the check does not read): SELECT/SELECT_V2 broadcast rules, ONE_HOT
# on/off values, LSTM kernel details, CAST from bool needing a logical-op producer, and a
# rank-4 constant operand of a binary op needing batch 1 (ReadTensor into HWC).
# ParsedOps such as BatchToSpace/SpaceToBatch/Clamp exist in the file but are not in the
# switch, so BATCH_TO_SPACE_ND / SPACE_TO_BATCH_ND are unsupported.
GPU_OPS: dict[str, OpRule] = {
    **dict.fromkeys(["ABS", "COS", "ELU", "EXP", "FLOOR", "GELU", "LOG", "LOGISTIC", "NEG",
                     "RSQRT", "SIGN", "SIN", "SQRT", "SQUARE", "TANH"], _UNARY),
    **dict.fromkeys(["DIV", "FLOOR_DIV", "FLOOR_MOD", "LOGICAL_AND", "MAXIMUM", "MINIMUM",
                     "POW", "SQUARED_DIFFERENCE", "SUB"], _BINARY),
    **dict.fromkeys(["EQUAL", "NOT_EQUAL", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL"],
                    _LOGICAL),
    "ADD": _BINARY._replace(check="broadcast"),
    "ADD_N": OpRule(2, num_inputs=(2,)),
    "MUL": _BINARY._replace(max_version=3, check="broadcast"),
    "AVERAGE_POOL_2D": _POOL,
    "MAX_POOL_2D": _POOL,
    "BATCH_MATMUL": OpRule(num_inputs=(2,), check="batch_matmul"),
    "CAST": OpRule(runtime_inputs=(1,), check="cast"),
    "CONCATENATION": OpRule(2, check="concatenation"),
    "CONV_2D": OpRule(6, runtime_inputs=(1, 2), check="conv"),
    "CUMSUM": OpRule(1, num_inputs=(2,), const_inputs=(1,), check="cumsum"),
    "DENSIFY": OpRule(1, runtime_inputs=(0,)),
    "DEPTHWISE_CONV_2D": OpRule(6, runtime_inputs=(1, 2), check="depthwise"),
    "DEPTH_TO_SPACE": OpRule(runtime_inputs=(1,), check="block_size"),
    "SPACE_TO_DEPTH": OpRule(2, runtime_inputs=(1,), check="block_size"),
    "DEQUANTIZE": OpRule(3, num_inputs=(1,), check="dequantize"),  # needs allow_quantized
    "QUANTIZE": OpRule(2, runtime_inputs=(1,)),  # needs allow_quantized
    "FULLY_CONNECTED": OpRule(9, check="fully_connected"),
    "GATHER": OpRule(1, num_inputs=(2,), runtime_inputs=(1, 2), check="gather"),
    "HARD_SWISH": OpRule(runtime_inputs=(1,)),
    "LSTM": OpRule(4),
    "MEAN": _REDUCE,
    "SUM": _REDUCE,
    "REDUCE_MAX": _REDUCE,
    "REDUCE_MIN": _REDUCE,
    "REDUCE_PROD": _REDUCE,
    "PAD": _PAD,
    "PADV2": _PAD,
    "MIRROR_PAD": _PAD,
    "ONE_HOT": OpRule(1, num_inputs=(4,)),
    "PACK": OpRule(),
    "UNPACK": OpRule(),
    "SPLIT": OpRule(),
    "SPLIT_V": OpRule(),
    "RELU": _RELU,
    "RELU6": _RELU,
    "RELU_0_TO_1": _RELU,
    "RELU_N1_TO_1": _RELU,
    "LEAKY_RELU": _RELU,
    "PRELU": OpRule(1),
    # Parse takes the new shape from the output tensor; the shape input is ignored.
    "RESHAPE": OpRule(1, runtime_inputs=(1,)),
    "RESIZE_BILINEAR": OpRule(3, runtime_inputs=(1,), check="resize_bilinear"),
    "RESIZE_NEAREST_NEIGHBOR": OpRule(3, runtime_inputs=(1,)),
    "SELECT": OpRule(1, num_inputs=(3,)),
    "SELECT_V2": OpRule(1, num_inputs=(3,)),
    "SLICE": OpRule(2, input_ranks=(3, 4)),
    "SOFTMAX": OpRule(2, check="softmax"),
    # begin/end/strides are read with ReadTensor in Parse (a runtime int32 tensor also fails
    # the type rule of IsAllAllowedTensors).
    "STRIDED_SLICE": OpRule(4, const_inputs=(1, 2, 3), input_ranks=(3, 4),
                            check="strided_slice"),
    "TILE": OpRule(runtime_inputs=(1,)),
    "TRANSPOSE": OpRule(4, runtime_inputs=(1,), const_inputs=(1,), check="transpose"),
    "TRANSPOSE_CONV": OpRule(3, runtime_inputs=(1, 2), check="strides"),
}

# Custom ops with a parser (the rest go to NewCustomOperationParser, which in the default
# build, common/default/custom_parsers.cc, returns an unimplemented parser).
GPU_CUSTOM_OPS: dict[str, OpRule] = {
    "Convolution2DTransposeBias": OpRule(),
    "MaxPoolingWithArgmax2D": OpRule(runtime_inputs=(1,)),
    "MaxUnpooling2D": OpRule(runtime_inputs=(2,)),
    "Resampler": OpRule(runtime_inputs=(2,), input_ranks=(4,)),
}

# Ops that call IsActivationSupported on their fused activation (gpu_compatibility.cc).
_FUSED_ACTIVATION_OPS = ("AVERAGE_POOL_2D", "MAX_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D",
                         "MUL", "SUB", "DIV")


def _runtime(tensors) -> list[Tensor]:
    return [t for t in tensors if t is not None and not t.constant]


def _input(op: Op, i: int) -> Tensor | None:
    return op.inputs[i] if i < len(op.inputs) else None


def _strides(o) -> list[str]:
    if o is not None and (o.strideH <= 0 or o.strideW <= 0):
        return [f"stride {o.strideH}x{o.strideW} must be positive"]
    return []


def _check_pool(op, graph):
    o = op.options
    if o is not None and (o.filterHeight <= 0 or o.filterWidth <= 0):
        return [f"kernel {o.filterHeight}x{o.filterWidth} must be positive"]
    return _strides(o)


def _check_conv(op, graph):
    o, x, w = op.options, _input(op, 0), _input(op, 1)
    out = _strides(o)
    if o is not None and (o.dilationHFactor <= 0 or o.dilationWFactor <= 0):
        out.append("dilation must be positive")
    if x is not None and w is not None and not w.constant and x.shape[-1:] != w.shape[-1:]:
        out.append("runtime weights with groups (weights channels != input channels)")
    return out


def _check_depthwise(op, graph):
    x, w, b = _input(op, 0), _input(op, 1), _input(op, 2)
    y, o = op.outputs[0], op.options
    out = _strides(o)
    if x is None or w is None or (x.rank, w.rank, y.rank) != (4, 4, 4):
        return out + ["input, filter and output must be 4-D"]
    if x.shape[0] != y.shape[0]:
        out.append("input batch != output batch")
    if w.shape[3] != y.shape[3]:
        out.append("filter channels != output channels")
    if o is not None and y.shape[3] != x.shape[3] * o.depthMultiplier:
        out.append("output channels != input channels * depth_multiplier")
    if b is not None and math.prod(b.shape) != y.shape[3]:
        out.append("bias size != output channels")
    return out


def _check_fully_connected(op, graph):
    o, x, w = op.options, _input(op, 0), _input(op, 1)
    out = []
    if o is not None and o.weightsFormat != 0:
        out.append("weights_format must be DEFAULT")
    if len(_runtime(op.inputs)) > 2:
        out.append("more than 2 runtime inputs")
    if x is None or x.constant:
        out.append("constant input")
    elif o is not None and o.keepNumDims and x.rank != op.outputs[0].rank:
        out.append("keep_num_dims with input rank != output rank")
    elif w is not None and w.constant and w.rank == 2 and x.shape[-1] != w.shape[1]:
        out.append("input channels != weights width")
    return out


def _check_batch_matmul(op, graph):
    a, b = _input(op, 0), _input(op, 1)
    runtime = len(_runtime(op.inputs))
    if runtime == 2 or (runtime == 1 and not a.constant and b.rank == 2):
        return []
    # BatchedMatMulOperationParser::Parse: "Not supported batched mat mul case".
    return ["needs two runtime inputs, or a runtime first input and a 2-D constant second"]


def _check_transpose(op, graph):
    perm = _input(op, 1)
    if perm is not None and perm.shape and perm.shape[0] not in (2, 3, 4):
        # TransposeOperationParser::Parse: "Permutation for transpose is invalid."
        return [f"{perm.shape[0]}-D permutation: only 2-, 3- and 4-D permutations are parsed"]
    return []


def _check_strided_slice(op, graph):
    o = op.options
    out = [f"{name} is not supported" for name, value in
           (("ellipsis_mask", o and o.ellipsisMask), ("new_axis_mask", o and o.newAxisMask),
            ("shrink_axis_mask", o and o.shrinkAxisMask)) if value]
    if len(op.inputs) < 4:
        out.append("needs 4 inputs")
    elif op.inputs[3].data is not None and any(s <= 0 for s in op.inputs[3].data):
        out.append("strides must be positive (no reverse slices)")
    return out


def _check_pad(op, graph):
    out = []
    if op.name == "MIRROR_PAD" and op.options is not None and op.options.mode != 0:
        out.append("only REFLECT mirror padding")
    pads = _input(op, 1)
    if pads is not None and (pads.rank != 2 or pads.shape[0] not in (3, 4) or pads.shape[1] != 2):
        out.append(f"paddings shape {list(pads.shape)}: expected 4x2 or 3x2")
    return out


def _check_axes_int32(op, graph):
    axes = _input(op, 1)
    return [] if axes is None or axes.dtype == "INT32" else [f"{axes.dtype} axes: needs int32"]


def _check_softmax(op, graph):
    return [] if op.options is None or op.options.beta == 1 else ["beta != 1"]


def _check_broadcast(op, graph):
    # CheckAddMulBroadcastCompatibility with the kStandard flags the delegate passes.
    a, b = _input(op, 0), _input(op, 1)
    if a is None or b is None or a.rank <= 1 or b.rank <= 1 or a.rank == b.rank:
        return []
    long, short = (a.shape, b.shape) if a.rank >= b.rank else (b.shape, a.shape)
    ok = len(long) == 4 and long[0] == 1 and len(short) == 3
    ok |= len(long) == 4 and len(short) == 2 and long[0] == 1 and short == (1, 1)
    ok |= len(long) == 4 and len(short) == 2 and (long[0], long[3]) == short
    return [] if ok else [f"broadcast of {list(a.shape)} with {list(b.shape)}"]


def _check_logical(op, graph):
    consumers = graph.consumers(op.outputs[0].index)
    if (len(consumers) == 1 and consumers[0].name in ("CAST", "SELECT", "SELECT_V2")
            and consumers[0].outputs[0].dtype in _FLOATS):
        return []
    return ["a comparison must feed exactly one CAST/SELECT with a float output"]


def _check_cast(op, graph):
    src, dst = op.inputs[0].dtype, op.outputs[0].dtype
    ok = (src == "BOOL" and dst in _FLOATS) or (src in _FLOATS and dst == "BOOL")
    ok |= src in ("FLOAT32", "INT32") and dst in ("FLOAT32", "INT32")
    return [] if ok else [f"cast {src} -> {dst}"]


def _check_cumsum(op, graph):
    x, axis = _input(op, 0), _input(op, 1)
    if x.dtype not in _FLOATS or op.outputs[0].dtype != x.dtype or axis.dtype != "INT32":
        return ["needs float input/output and an int32 axis"]
    return []


def _check_block_size(op, graph):
    size = op.options.blockSize if op.options is not None else 2
    return [] if size > 1 else [f"block_size {size} must be > 1"]


def _check_dequantize(op, graph):
    return ["int16 input"] if op.inputs[0].dtype == "INT16" else []


def _check_gather(op, graph):
    indices = _input(op, 1)
    if indices.rank != 1 or indices.dtype != "INT32":
        return ["indices must be 1-D int32"]
    return []


def _check_resize_bilinear(op, graph):
    o = op.options
    return ["align_corners with half_pixel_centers"] if o and o.alignCorners and \
        o.halfPixelCenters else []


def _check_concatenation(op, graph):
    # Parse reads a constant input into a BHWC TensorFloat32 (SetAllDimensions: rank 4).
    return [f"constant input '{t.name}' of rank {t.rank}: only 4-D constants"
            for t in op.inputs if t is not None and t.constant and t.rank != 4]


_CHECKS = {
    "pool": _check_pool, "conv": _check_conv, "depthwise": _check_depthwise,
    "fully_connected": _check_fully_connected, "batch_matmul": _check_batch_matmul,
    "transpose": _check_transpose, "strided_slice": _check_strided_slice, "pad": _check_pad,
    "axes_int32": _check_axes_int32, "softmax": _check_softmax, "broadcast": _check_broadcast,
    "logical": _check_logical, "cast": _check_cast, "cumsum": _check_cumsum,
    "block_size": _check_block_size, "dequantize": _check_dequantize, "gather": _check_gather,
    "resize_bilinear": _check_resize_bilinear, "concatenation": _check_concatenation,
    "strides": lambda op, graph: _strides(op.options),
}


def _allowed_types(name: str, allow_quantized: bool) -> tuple[set, set]:
    # GetOpsToReplace's allowed_in_types / allowed_out_types (model_builder.cc).
    ins = set(_FLOATS) | (set(_QUANTIZED) if allow_quantized else set())
    outs = set(ins)
    if name in ("GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "EQUAL", "NOT_EQUAL"):
        outs.add("BOOL")
    if name == "CAST":
        ins |= {"BOOL", "INT32"}
        outs |= {"INT32", "BOOL"}
    if name in ("ONE_HOT", "GATHER"):
        ins.add("INT32")
    if name in ("SELECT", "SELECT_V2"):
        ins.add("BOOL")
    if name == "LOGICAL_AND":
        ins.add("BOOL")
        outs.add("BOOL")
    return ins, outs


def _op_issues(op: Op, graph: Graph, allow_quantized: bool) -> list[str]:
    if op.custom and op.name.startswith(FLEX_PREFIX):
        return ["Select TF op (Flex): runs only on the CPU Flex delegate"]
    rule = (GPU_CUSTOM_OPS if op.custom else GPU_OPS).get(op.name)
    if rule is None:
        return ["no GPU parser for this op (NewOperationParser)"]
    fp16_weights = op.name == "DEQUANTIZE" and all(t.constant and t.dtype == "FLOAT16"
                                                   for t in op.inputs)
    if op.name in ("QUANTIZE", "DEQUANTIZE") and not allow_quantized and not fp16_weights:
        # The fp16-weight DEQUANTIZE is absorbed by FP16GraphPartitionHelper (delegates/utils.cc).
        return ["needs quantized models allowed (TFLITE_GPU_EXPERIMENTAL_FLAGS_ENABLE_QUANT)"]
    issues = []
    if rule.max_version is not None and op.version > rule.max_version:
        issues.append(f"version {op.version} > max supported {rule.max_version}")
    tensors = [t for t in op.inputs + op.outputs if t is not None]
    for t in tensors:
        if t.rank > 4:
            issues.append(f"{t.rank}-D tensor '{t.name}' {list(t.shape)}: the GPU delegate "
                          "works on BHWC and refuses tensors of rank > 4 (IsAllAllowedTensors)")
        elif t.rank == 0 and not t.constant:
            issues.append(f"runtime scalar '{t.name}' (ExtractTensorShape needs rank 1-4)")
    allowed_in, allowed_out = _allowed_types(op.name, allow_quantized)
    for group, allowed in ((op.inputs, allowed_in), (op.outputs, allowed_out)):
        for t in _runtime(group):
            if t.dtype not in allowed and not fp16_weights:
                issues.append(f"runtime tensor '{t.name}' of type {t.dtype}")
    runtime = len(_runtime(op.inputs))
    if rule.num_inputs is not None and len(op.inputs) not in rule.num_inputs:
        issues.append(f"{len(op.inputs)} inputs, expected {_or(rule.num_inputs)}")
    if rule.runtime_inputs is not None and runtime not in rule.runtime_inputs:
        issues.append(f"{runtime} runtime inputs, expected {_or(rule.runtime_inputs)}")
    for i in rule.const_inputs:
        t = _input(op, i)
        if t is not None and not t.constant:
            issues.append(f"input {i} ('{t.name}') must be constant")
    x = _input(op, 0)
    if rule.input_ranks is not None and x is not None and x.rank not in rule.input_ranks:
        issues.append(f"{x.rank}-D input, expected {_or(rule.input_ranks)}-D")
    activation = getattr(op.options, "fusedActivationFunction", 0)
    if op.name in _FUSED_ACTIVATION_OPS and activation == _SIGN_BIT:
        issues.append("fused SIGN_BIT activation")
    if rule.check is not None:
        issues += _CHECKS[rule.check](op, graph)
    return list(dict.fromkeys(issues))  # a tensor used twice is reported once


def _or(values) -> str:
    return " or ".join(str(v) for v in values)


def gpu_compatibility(model, *, allow_quantized: bool = True) -> GpuReport:
    """Checks the main subgraph against the GPU delegate's rules.

    Args:
        model: a parsed :class:`~keras_mobile.tflite.inspect.Graph`, a schema ``ModelT``, a
            ``.tflite`` path or its bytes.
        allow_quantized: the delegate's ``TFLITE_GPU_EXPERIMENTAL_FLAGS_ENABLE_QUANT`` (set
            by ``TfLiteGpuDelegateOptionsV2Default``): int8/uint8 activations, QUANTIZE and
            DEQUANTIZE are accepted and computed in float.

    Returns:
        A :class:`GpuReport`; ``compatible`` means every op would be delegated.
    """
    if not isinstance(model, Graph):
        if not hasattr(model, "subgraphs"):
            model = read_model(model)[0]
        model = parse_subgraph(model, 0)
    graph = model
    issues = [GpuIssue(op.index, op.name, reason) for op in graph.ops
              for reason in _op_issues(op, graph, allow_quantized)]
    dynamic = [t for t in graph.tensors if t.dynamic]
    if dynamic:
        issues.insert(0, GpuIssue(None, None, (
            f"dynamic shape: {len(dynamic)} tensors have -1 in shape_signature, e.g. "
            f"'{dynamic[0].name}' {list(dynamic[0].signature)}. The GPU delegate does not "
            "allow dynamic tensors and fixes all shapes when applied; export with batch 1 "
            "and a static input shape.")))
    notes = []
    if any(t.dtype in _QUANTIZED for t in graph.tensors if not t.constant):
        notes.append("int8/uint8 activations: the delegate dequantizes them and computes in "
                     "float" + ("" if allow_quantized else " (not allowed here)")
                     + "; needs TFLITE_GPU_EXPERIMENTAL_FLAGS_ENABLE_QUANT (on by default).")
    if any(op.name == "BATCH_MATMUL" and op.options is not None
           and (op.options.adjX or op.options.adjY) for op in graph.ops):
        notes.append("BATCH_MATMUL with adj_x/adj_y: the GPU parser ignores them "
                     "(google-ai-edge/LiteRT#8913, open): results may differ from the CPU.")
    return GpuReport(not issues, tuple(issues), tuple(notes))
