"""Selective quantization of a converted int8 model: chosen ops compute in float32
between a DEQUANTIZE and a QUANTIZE, so that XNNPACK keeps them in its partition.

XNNPACK runs float32 SOFTMAX and RSQRT, and QUANTIZE / DEQUANTIZE, but not int8
SOFTMAX or RSQRT, nor an int8 BATCH_MATMUL whose right operand has a non-zero zero
point, nor an int8 ADD / SUB / MUL whose scales are out of its range: each such op
leaves the graph to TFLite's reference int8 kernels and splits XNNPACK into partitions
(a classifier's int8 softmax head: 2 partitions; EMO's attention and LayerNorms: more
than 20). Rewritten, every op stays in one partition,
and the float ops compute from the same int8 inputs without rounding their own
outputs twice.

Consecutive float ops share their conversions (attention's
``BATCH_MATMUL -> SOFTMAX -> BATCH_MATMUL`` is one float island), and a float op
followed by the graph's output DEQUANTIZE writes the float output directly.

This is what TFLite's selective quantization (``QuantizationDebugOptions(
denylisted_ops=...)``) makes of a float model, applied to the converted file.
"""

from __future__ import annotations

import numpy as np

from keras_mobile.tflite.inspect import read_model, schema, write_model

# Int8 ops that XNNPACK (LiteRT 2.3) never takes; ADD, SUB and MUL it takes only when
# their scales are in range (``_xnnpack_rejects``).
XNNPACK_FLOAT_OPS = ("SOFTMAX", "RSQRT")
_QUANTIZED = ("INT8", "UINT8")
# XNNPACK's int8 limits as its TFLite delegate checks them (xnnpack_delegate.cc; the
# ranges are recalled, not read from this LiteRT build: on EMO-1M they flag exactly the
# ADD / MUL ops the delegate left out, and the rewritten file is one partition): input
# scale / output scale for ADD and SUB, input1 scale * input2 scale / output scale for MUL.
_ADD_SCALE_RANGE = (1 / 1024, 256)
_MUL_SCALE_RANGE = (1 / 65536, 256)


def check_denylisted_ops(ops) -> None:
    """The ValueError for a ``denylisted_ops`` that is not ``"xnnpack"``, empty / None,
    or a sequence of TFLite builtin op names."""
    if ops is None or ops == "xnnpack":
        return
    known = {k for k in vars(schema().BuiltinOperator) if not k.startswith("_")}
    if isinstance(ops, str) or not all(isinstance(op, str) and op in known for op in ops):
        raise ValueError(
            'denylisted_ops must be "xnnpack", a sequence of TFLite op names such as '
            f'("SOFTMAX", "RSQRT"), or () for a fully integer model. Received: '
            f"denylisted_ops={ops!r}")


def dequantize_ops(flatbuffer: bytes, ops="xnnpack") -> bytes:
    """``flatbuffer`` (a converted int8 model) with int8 ops computing in float32
    (module docstring): those named in ``ops``, or for ``"xnnpack"`` those XNNPACK
    does not run in int8 (``XNNPACK_FLOAT_OPS``; ADD, SUB, MUL with scales outside
    its range; BATCH_MATMUL whose right operand has a non-zero zero point). Returns
    the bytes unchanged when no op matches."""
    fb = schema()
    model, _ = read_model(flatbuffer)
    types = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    builtins = fb.BuiltinOperator
    names = {getattr(builtins, name)
             for name in (XNNPACK_FLOAT_OPS if ops == "xnnpack" else ops)}
    graph = model.subgraphs[0]
    tensors = graph.tensors

    def builtin(op):
        code = model.operatorCodes[op.opcodeIndex]
        return max(code.builtinCode, code.deprecatedBuiltinCode)

    def quantized(index):
        return index >= 0 and types[tensors[index].type] in _QUANTIZED

    def code_index(op_code, version):
        for i, code in enumerate(model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == op_code \
                    and code.version == version:
                return i
        code = fb.OperatorCodeT()
        code.builtinCode, code.version = op_code, version
        code.deprecatedBuiltinCode = min(op_code, builtins.PLACEHOLDER_FOR_GREATER_OP_CODES)
        model.operatorCodes.append(code)
        return len(model.operatorCodes) - 1

    def constant(index):
        data = model.buffers[tensors[index].buffer].data
        return data is not None and len(data) > 0

    def float_tensor(index, suffix):
        source = tensors[index]
        tensor = fb.TensorT()
        tensor.shape, tensor.shapeSignature = source.shape, source.shapeSignature
        tensor.type, tensor.buffer = fb.TensorType.FLOAT32, 0
        tensor.name = (source.name.decode() if isinstance(source.name, bytes)
                       else source.name) + suffix
        if constant(index):  # dequantized here, once
            tensor.buffer = len(model.buffers)
            entry = fb.BufferT()
            values = _dequantized(source, model.buffers[source.buffer].data)
            entry.data = np.frombuffer(values.tobytes(), np.uint8)
            model.buffers.append(entry)
        tensors.append(tensor)
        return len(tensors) - 1

    def conversion(op_code, version, source, target):
        op = fb.OperatorT()
        op.opcodeIndex = code_index(op_code, version)
        op.inputs, op.outputs = np.array([source], np.int32), np.array([target], np.int32)
        return op

    def selected(op):
        if not any(quantized(i) for i in op.outputs):
            return False
        if builtin(op) in names:
            return True
        return ops == "xnnpack" and _xnnpack_rejects(
            fb.BuiltinOperator, builtin(op), [tensors[i] if i >= 0 else None for i in op.inputs],
            [tensors[o] for o in op.outputs])

    twins = {}  # int8 tensor -> the float32 tensor that holds its value
    rewritten, inserted = [], []  # the ops, the conversions added
    for op in graph.operators:
        if not selected(op):
            rewritten.append(op)
            continue
        inputs = []
        for i in map(int, op.inputs):
            if quantized(i) and i not in twins:
                twins[i] = float_tensor(i, "/dequantized")
                if not constant(i):
                    inserted.append(conversion(builtins.DEQUANTIZE, 2, i, twins[i]))
                    rewritten.append(inserted[-1])
            inputs.append(twins[i] if quantized(i) else i)
        originals = [int(o) for o in op.outputs]
        for o in originals:
            twins[o] = float_tensor(o, "/float")
        op.inputs = np.array(inputs, np.int32)
        op.outputs = np.array([twins[o] for o in originals], np.int32)
        op.opcodeIndex = code_index(builtin(op), 1)  # the float kernel's version
        rewritten.append(op)
        inserted += [conversion(builtins.QUANTIZE, 1, twins[o], o) for o in originals]
        rewritten += inserted[-len(originals):]
    if not twins:
        return flatbuffer
    rewritten = _drop_conversions(rewritten, inserted, graph, twins, builtin, builtins)
    graph.operators = rewritten
    return write_model(model, len(flatbuffer))


def _drop_conversions(ops, inserted, graph, twins, builtin, builtins):
    """Without the conversions that undo each other: the model's own DEQUANTIZE of a
    tensor that has a float twin goes (the twin is renamed to its output, which may be a
    graph output), and so does an added QUANTIZE whose int8 output nobody reads (dropping
    one removes a read of a float tensor only, so one pass finds them all)."""
    added = {id(op) for op in inserted}
    float_of = {}  # a DEQUANTIZE's output -> the float twin it duplicates
    kept = []
    for op in ops:
        source = int(op.inputs[0]) if len(op.inputs) else -1
        if builtin(op) == builtins.DEQUANTIZE and source in twins and id(op) not in added \
                and twins[source] not in float_of.values():
            float_of[int(op.outputs[0])] = twins[source]
            continue
        kept.append(op)
    rename = {twin: output for output, twin in float_of.items()}
    for op in kept:
        op.inputs = np.array([rename.get(int(i), int(i)) for i in op.inputs], np.int32)
        op.outputs = np.array([rename.get(int(o), int(o)) for o in op.outputs], np.int32)
    read = {int(i) for op in kept for i in op.inputs} | {int(o) for o in graph.outputs}
    return [op for op in kept if not (id(op) in added and builtin(op) == builtins.QUANTIZE
                                      and int(op.outputs[0]) not in read)]


def _xnnpack_rejects(builtins, code, inputs, outputs) -> bool:
    """Whether XNNPACK refuses this int8 ADD / SUB / MUL / BATCH_MATMUL."""
    def scale(tensor):
        q = tensor.quantization
        return float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else 0.0

    if code == builtins.BATCH_MATMUL:
        q = inputs[1].quantization
        return q is not None and q.zeroPoint is not None and any(int(z) for z in q.zeroPoint)
    out = scale(outputs[0])
    if not out:
        return False
    if code in (builtins.ADD, builtins.SUB):
        low, high = _ADD_SCALE_RANGE
        return any(not low <= scale(t) / out < high for t in inputs[:2])
    if code == builtins.MUL:
        low, high = _MUL_SCALE_RANGE
        return not low <= scale(inputs[0]) * scale(inputs[1]) / out < high
    return False


def _dequantized(tensor, data) -> np.ndarray:
    q = tensor.quantization
    dtype = np.int8 if tensor.type == schema().TensorType.INT8 else np.uint8
    values = np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype).astype(np.float32)
    values = values.reshape(tensor.shape)
    scale = np.asarray(q.scale, np.float32)
    zero = np.asarray(q.zeroPoint, np.float32)
    if scale.size > 1:  # per channel, along quantizedDimension
        shape = [1] * values.ndim
        shape[q.quantizedDimension] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((values - zero) * scale).astype(np.float32)
