"""Running .tflite models in the LiteRT interpreter: one place for creating the
interpreter, feeding (quantized) inputs, reading (dequantized) outputs and
counting XNNPACK delegate partitions."""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np


def interpreter(model, *, num_threads: int = 1, use_xnnpack: bool = True):
    """A LiteRT ``Interpreter`` for a path or flatbuffer bytes, tensors allocated."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {"num_threads": int(num_threads)}
    if not use_xnnpack:
        kwargs["experimental_op_resolver_type"] = (
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    if isinstance(model, (bytes, bytearray)):
        kwargs["model_content"] = bytes(model)
    else:
        kwargs["model_path"] = os.fspath(model)
    with _quiet():
        it = Interpreter(**kwargs)
        it.allocate_tensors()
    return it


def _quiet():
    """LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" once per process;
    dropped as TensorFlow's INFO lines are (keras_mobile._startup). This module is also
    loaded alone, by file path, in the benchmark's child process: no filter there."""
    startup = sys.modules.get("keras_mobile._startup")
    return startup.without_info_lines() if startup and startup.quiet() else \
        contextlib.nullcontext()


def check_model_file(path, name: str = "model") -> str:
    """The one check of a ``.tflite`` file given to run (``name``: the argument or
    flag, for the message): it exists, has the TFLite identifier, and LiteRT's
    flatbuffer verifier accepts it (a truncated or corrupt file can still start
    with ``TFL3``). The verifier builds an interpreter without allocating tensors
    or applying delegates: milliseconds, even for large models. Returns ``path``."""
    from keras_mobile.tflite.inspect import is_tflite

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{name} must be an existing .tflite file. Received: {name}={path!r}")
    with open(path, "rb") as f:
        if not is_tflite(f.read(8)):
            raise ValueError(f"{name} is not a TFLite flatbuffer (no TFL3 identifier). "
                             f"Received: {name}={path!r}")
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        Interpreter(model_path=path, experimental_op_resolver_type=(
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    except ValueError as error:
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        if "not a valid Flatbuffer" in reason:  # the verifier's words
            raise ValueError(f"{path} is not a valid .tflite model (truncated or corrupt: "
                             f"{reason}).") from None
        raise ValueError(f"{path} cannot be loaded by LiteRT ({reason}).") from None
    return path


def _quantize(x, detail):
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    q = np.round(x / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(detail["dtype"])


def _dequantize(y, detail):
    if detail["dtype"] in (np.float32, np.float16):
        return y.astype(np.float32)
    scale, zero_point = detail["quantization"]
    return (y.astype(np.float32) - zero_point) * scale


def predict(it, images: np.ndarray) -> list[np.ndarray]:
    """Float outputs (one array per model output, batch-major) for float images,
    one image per ``invoke`` (models are converted with batch 1); integer
    inputs are quantized and integer outputs dequantized with the model's own
    parameters."""
    (inp,) = it.get_input_details()
    outs = it.get_output_details()
    results = [[] for _ in outs]
    for image in np.asarray(images, np.float32):
        it.set_tensor(inp["index"], _quantize(image[None], inp))
        it.invoke()
        for r, detail in zip(results, outs, strict=True):
            r.append(_dequantize(it.get_tensor(detail["index"]), detail)[0])
    return [np.stack(r) for r in results]


def delegation(it) -> tuple[int, bool]:
    """``(partitions, fully_delegated)`` of an interpreter created with XNNPACK:
    the number of delegate kernels, and whether one kernel maps the graph
    inputs to the graph outputs, leaving no op to the reference kernels."""
    ops = it._get_ops_details()  # noqa: SLF001  (the only view of the execution plan)
    kernels = [op for op in ops if op["op_name"] == "DELEGATE"]
    if len(kernels) != 1:
        return len(kernels), False
    graph_inputs = {int(d["index"]) for d in it.get_input_details()}
    graph_outputs = {int(d["index"]) for d in it.get_output_details()}
    produced = {int(o) for op in ops if op["op_name"] != "DELEGATE" for o in op["outputs"]}
    kernel_inputs = {int(i) for i in kernels[0]["inputs"] if i >= 0}
    activations = kernel_inputs & (produced | graph_inputs)  # the rest are constants
    return 1, activations <= graph_inputs and graph_outputs <= set(map(int, kernels[0]["outputs"]))
