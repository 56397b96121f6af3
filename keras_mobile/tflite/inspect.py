"""A static report of a ``.tflite`` file: ops, tensor ranks, I/O, float ops, GPU readiness.

The flatbuffer is read with the official generated TFLite schema classes
(``schema_py_generated``: LiteRT's copy when ``ai_edge_litert`` is installed, which imports
without TensorFlow, else TensorFlow's ``tensorflow.lite.python``); no interpreter runs.
Tensor statistics, op counts and the GPU check cover the main subgraph (index 0), the one
the GPU delegate is applied to.

Example:
    >>> from keras_mobile.tflite.inspect import inspect
    >>> report = inspect("model.tflite")
    >>> print(report)            # op counts, ranks, I/O, GPU verdict with reasons
    >>> report.gpu.compatible, report.float_ops
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections import Counter
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from keras_mobile.tflite.gpu import GpuReport

METADATA_NAME = "TFLITE_METADATA"  # the Model.metadata entry Android clients read
TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier, bytes 4-8
FLEX_PREFIX = "Flex"  # custom code of a Select TF op (tflite/delegates/flex)
FLOAT_TYPES = ("FLOAT32", "FLOAT16")
_MAX_DATA_ELEMENTS = 64  # small integer constants (perm, axes, paddings) keep their values


@functools.cache
def schema():
    """The generated TFLite schema module, imported on first use."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        from tensorflow.lite.python import schema_py_generated
    return schema_py_generated


def is_tflite(head: bytes) -> bool:
    """Whether ``head`` (the first 8 or more bytes of a file) starts a TFLite flatbuffer."""
    return len(head) >= 8 and head[4:8] == TFLITE_IDENTIFIER


@functools.cache
def _enum_names(enum_name: str) -> dict[int, str]:
    enum = getattr(schema(), enum_name)
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


class Tensor(NamedTuple):
    """One tensor of a subgraph. ``data`` holds the values of small integer constants."""

    index: int
    name: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]  # shape_signature (-1: dynamic), or shape when absent
    dtype: str  # TensorType name: FLOAT32, INT8, ...
    constant: bool  # backed by a non-empty buffer
    quantization: tuple | None  # (scale, zero_point); tuples of both when per-channel
    data: tuple[int, ...] | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def dynamic(self) -> bool:
        return -1 in self.signature


class Op(NamedTuple):
    """One operator. ``inputs`` has None for an omitted optional input (index -1)."""

    index: int
    name: str  # BuiltinOperator name, the custom code for CUSTOM ops
    version: int
    custom: bool
    inputs: tuple[Tensor | None, ...]
    outputs: tuple[Tensor, ...]
    options: Any  # the builtin *OptionsT object, or None


class Graph(NamedTuple):
    """A parsed subgraph."""

    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def consumers(self, tensor_index: int) -> list[Op]:
        return [op for op in self.ops
                if any(t is not None and t.index == tensor_index for t in op.inputs)]


class TensorSpec(NamedTuple):
    """A model input or output."""

    name: str
    shape: tuple[int, ...]  # the shape signature: -1 marks a dynamic dimension
    dtype: str
    quantization: tuple | None  # (scale, zero_point) or None


def read_model(path_or_bytes):
    """Returns ``(ModelT, bytes)`` for a ``.tflite`` path or its bytes."""
    if isinstance(path_or_bytes, (str, os.PathLike)):
        with open(path_or_bytes, "rb") as f:
            data = f.read()
    elif isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
    else:
        raise TypeError("path_or_bytes must be a path or the bytes of a .tflite file. "
                        f"Received: path_or_bytes={type(path_or_bytes).__name__}.")
    if not is_tflite(data):
        raise ValueError("path_or_bytes must be a TFLite flatbuffer (file identifier TFL3). "
                         f"Received: identifier={data[4:8]!r}.")
    model = schema().ModelT.InitFromPackedBuf(data, 0)
    for buffer in model.buffers or ():  # models > 2 GB keep data after the flatbuffer
        if buffer.offset:
            buffer.data = np.frombuffer(data, np.uint8, buffer.size, buffer.offset)
    return model, data


def write_model(model, size_hint: int = 0) -> bytes:
    """The flatbuffer bytes of a ``ModelT`` (:func:`read_model`'s first result), its
    constant buffers 16-byte aligned as the converter writes them (the generated
    ``BufferT.Pack`` aligns to 1 byte). Buffers kept outside the flatbuffer (models
    over 2 GB) are not supported."""
    import flatbuffers

    if any((b.offset or 0) > 1 for b in model.buffers or ()):
        raise ValueError("The model keeps its buffers outside the flatbuffer (a model over "
                         "2 GB); rewriting such a file is not supported.")
    model.buffers = [_aligned(b) for b in model.buffers or ()]
    builder = flatbuffers.Builder(size_hint + 1024)
    builder.Finish(model.Pack(builder), TFLITE_IDENTIFIER)
    return bytes(builder.Output())


_BUFFER_ALIGNMENT = 16  # what the TFLite converter gives constant buffers


def _aligned(buffer):
    copy = _aligned_buffer_type()()
    copy.data, copy.offset, copy.size = buffer.data, buffer.offset or 0, buffer.size or 0
    return copy


@functools.cache
def _aligned_buffer_type():
    fb = schema()

    class AlignedBufferT(fb.BufferT):
        def Pack(self, builder):  # noqa: N802  (the generated classes' name)
            data = None
            if self.data is not None:
                payload = np.asarray(self.data, np.uint8).tobytes()
                builder.StartVector(1, len(payload), _BUFFER_ALIGNMENT)
                builder.head -= len(payload)
                builder.Bytes[builder.head:builder.head + len(payload)] = payload
                data = builder.EndVector()
            fb.BufferStart(builder)
            if data is not None:
                fb.BufferAddData(builder, data)
            fb.BufferAddOffset(builder, self.offset)
            fb.BufferAddSize(builder, self.size)
            return fb.BufferEnd(builder)

    return AlignedBufferT


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _ints(values) -> tuple[int, ...]:
    return () if values is None else tuple(int(v) for v in values)


def _op_name(code) -> str:
    # Codes < 127 may sit only in deprecated_builtin_code (schema.fbs, OperatorCode).
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema().BuiltinOperator.CUSTOM:
        return _text(code.customCode)
    return _enum_names("BuiltinOperator").get(builtin, f"BUILTIN_{builtin}")


def _quantization(q) -> tuple | None:
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    zero_points = q.zeroPoint if q.zeroPoint is not None else [0] * len(q.scale)
    scale, zero = [float(s) for s in q.scale], [int(z) for z in zero_points]
    return (scale[0], zero[0]) if len(scale) == 1 else (tuple(scale), tuple(zero))


def _tensor(model, index: int, t) -> Tensor:
    shape = _ints(t.shape)
    signature = shape if t.shapeSignature is None else _ints(t.shapeSignature)
    buffer = model.buffers[t.buffer] if model.buffers and t.buffer else None
    raw = None if buffer is None else buffer.data
    constant = raw is not None and len(raw) > 0
    dtype = _enum_names("TensorType").get(t.type, str(t.type))
    data = None
    if constant and dtype in ("INT32", "INT64") and int(np.prod(shape)) <= _MAX_DATA_ELEMENTS:
        little_endian = np.dtype(dtype.lower()).newbyteorder("<")
        data = _ints(np.frombuffer(bytes(np.asarray(raw, np.uint8)), little_endian))
    return Tensor(index, _text(t.name), shape, signature, dtype, constant,
                  _quantization(t.quantization), data)


def parse_subgraph(model, index: int = 0) -> Graph:
    """Parses subgraph ``index`` of a ``ModelT`` into tensors and ops."""
    subgraph = model.subgraphs[index]
    tensors = tuple(_tensor(model, i, t) for i, t in enumerate(subgraph.tensors or ()))
    codes, custom_code = model.operatorCodes or (), schema().BuiltinOperator.CUSTOM
    ops = []
    for i, op in enumerate(subgraph.operators or ()):
        code = codes[op.opcodeIndex]
        ins = tuple(tensors[j] if j >= 0 else None for j in _ints(op.inputs))
        outs = tuple(tensors[j] for j in _ints(op.outputs) if j >= 0)
        custom = max(code.builtinCode, code.deprecatedBuiltinCode) == custom_code
        ops.append(Op(i, _op_name(code), code.version, custom, ins, outs, op.builtinOptions))
    return Graph(tensors, tuple(ops), _ints(subgraph.inputs), _ints(subgraph.outputs))


def _spec(t: Tensor) -> TensorSpec:
    return TensorSpec(t.name, t.signature, t.dtype, t.quantization)


def _float_ops(graph: Graph) -> list[tuple[int, str]]:
    """Ops with a non-constant float input or output, less QUANTIZE/DEQUANTIZE at the boundary."""
    found = []
    for op in graph.ops:
        runtime = [t for t in op.inputs + op.outputs if t is not None and not t.constant]
        if not any(t.dtype in FLOAT_TYPES for t in runtime):
            continue
        if op.name == "QUANTIZE" and all(t.index in graph.inputs for t in op.inputs if t):
            continue
        if op.name == "DEQUANTIZE" and all(t.index in graph.outputs for t in op.outputs):
            continue
        found.append((op.index, op.name))
    return found


@dataclasses.dataclass(frozen=True)
class Inspection:
    """What :func:`inspect` found in a ``.tflite`` model (main subgraph unless said)."""

    path: str | None
    size_bytes: int
    ops: dict[str, int]  # op name -> count, most frequent first
    num_ops: int
    num_subgraphs: int
    max_rank: int  # over non-scalar activation (non-constant) tensors
    tensors_by_rank: dict[int, int]  # rank -> number of activation tensors
    high_rank_tensors: list[tuple[str, tuple[int, ...]]]  # activation tensors of rank > 4
    dynamic_tensors: list[str]  # tensors whose shape_signature has a -1
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    float_ops: list[tuple[int, str]]  # (op index, op name) computing in float
    custom_ops: list[str]  # custom codes, Select TF (Flex) ops excluded
    select_tf_ops: list[str]  # Flex op names, e.g. "FlexRoll"
    has_metadata: bool  # a metadata entry named TFLITE_METADATA
    gpu: GpuReport

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples become lists, the GPU report a nested dict)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["inputs"] = [s._asdict() for s in self.inputs]
        out["outputs"] = [s._asdict() for s in self.outputs]
        out["tensors_by_rank"] = {str(k): v for k, v in self.tensors_by_rank.items()}
        out["gpu"] = self.gpu.to_dict()
        return _jsonable(out)

    def __str__(self) -> str:
        def io(specs):
            return ", ".join(f"{s.name} {list(s.shape)} {s.dtype}"
                             + (f" q={s.quantization}" if s.quantization else "")
                             for s in specs)

        ranks = ", ".join(f"{r}-D: {n}" for r, n in sorted(self.tensors_by_rank.items()))
        lines = [
            f"{self.path or '<bytes>'}: {self.size_bytes / 1024:.1f} KiB, {self.num_ops} ops, "
            f"{self.num_subgraphs} subgraph(s), metadata: {'yes' if self.has_metadata else 'no'}",
            "ops: " + ", ".join(f"{name} x{n}" for name, n in self.ops.items()),
            f"activation ranks: {ranks} (max {self.max_rank})",
            f"inputs: {io(self.inputs)}",
            f"outputs: {io(self.outputs)}",
        ]
        if self.high_rank_tensors:
            lines.append("rank > 4: " + ", ".join(f"{name} {list(shape)}"
                                                  for name, shape in self.high_rank_tensors))
        if self.dynamic_tensors:
            lines.append(f"dynamic shapes: {len(self.dynamic_tensors)} tensors, e.g. "
                         + ", ".join(self.dynamic_tensors[:3]))
        lines.append(f"float ops: {len(self.float_ops)} of {self.num_ops}")
        if self.custom_ops or self.select_tf_ops:
            lines.append(f"custom ops: {self.custom_ops}, "
                         f"Select TF (Flex) ops: {self.select_tf_ops}")
        lines.append(str(self.gpu))
        return "\n".join(lines)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def inspect(path_or_bytes, *, allow_quantized: bool = True) -> Inspection:
    """Reports what a ``.tflite`` model holds, without running it.

    Args:
        path_or_bytes: path of a ``.tflite`` file, or its bytes.
        allow_quantized: passed to :func:`keras_mobile.tflite.gpu.gpu_compatibility` (the GPU
            delegate's ``TFLITE_GPU_EXPERIMENTAL_FLAGS_ENABLE_QUANT``, on by default).

    Returns:
        An :class:`Inspection`; ``print`` it for a summary.
    """
    from keras_mobile.tflite import gpu  # gpu.py imports this module

    model, data = read_model(path_or_bytes)
    graph = parse_subgraph(model, 0)
    used = {t.index for op in graph.ops for t in op.inputs + op.outputs if t is not None}
    used |= set(graph.inputs) | set(graph.outputs)
    activations = [t for t in graph.tensors if t.index in used and not t.constant]
    names = [op.name for op in graph.ops]
    custom = [op.name for op in graph.ops if op.custom]
    return Inspection(
        path=None if isinstance(path_or_bytes, (bytes, bytearray, memoryview))
        else os.fspath(path_or_bytes),
        size_bytes=len(data),
        ops=dict(Counter(names).most_common()),
        num_ops=len(graph.ops),
        num_subgraphs=len(model.subgraphs or ()),
        max_rank=max((t.rank for t in activations), default=0),
        tensors_by_rank=dict(sorted(Counter(t.rank for t in activations).items())),
        high_rank_tensors=[(t.name, t.shape) for t in activations if t.rank > 4],
        dynamic_tensors=[t.name for t in graph.tensors if t.dynamic],
        inputs=[_spec(graph.tensors[i]) for i in graph.inputs],
        outputs=[_spec(graph.tensors[i]) for i in graph.outputs],
        float_ops=_float_ops(graph),
        custom_ops=sorted({n for n in custom if not n.startswith(FLEX_PREFIX)}),
        select_tf_ops=sorted({n for n in custom if n.startswith(FLEX_PREFIX)}),
        has_metadata=any(_text(m.name) == METADATA_NAME for m in model.metadata or ()),
        gpu=gpu.gpu_compatibility(graph, allow_quantized=allow_quantized),
    )
