"""Parameters, multiply-adds, activation memory and arithmetic intensity.

Counting convention (per image, batch 1, inference):

* ``macs`` = multiply-accumulates of convolutions (dense, depthwise, 1x1 and
  the squeeze-excite convs), dense layers and the attention matmuls (Q.K^T and
  A.V). This is the "MAdds"/"FLOPs" of the MobileNet, EfficientNet, MobileNeXt
  and EMO papers, and equals fvcore's conv + linear + matmul counts. Biases,
  activations, additions, multiplications, pooling and softmax are not counted.
* ``fvcore_flops`` = ``macs`` + normalization as fvcore counts it in eval mode
  (BatchNorm 2 per element, LayerNorm 5 per element): the number the EMO code
  and training logs print.
* Memory is float32 (4 bytes per element). ``bytes moved`` of a layer = its
  inputs + outputs + parameters; arithmetic intensity = MACs / bytes moved.
  ``peak_activation_bytes`` is the largest sum of tensors alive at once when
  the layers run in order, each tensor freed after its last consumer
  (Identity/Dropout/Input alias their input).
"""

from __future__ import annotations

import dataclasses
import math

import keras

_ALIASES = ("InputLayer", "Identity", "Dropout")
_NORM_FLOPS = {"BatchNormalization": 2, "LayerNormalization": 5, "LayerNorm": 5}


@dataclasses.dataclass(frozen=True)
class LayerProfile:
    """One row of the per-layer table."""

    name: str
    type: str
    output_shape: tuple
    params: int
    macs: int
    bytes_moved: int

    @property
    def arithmetic_intensity(self) -> float:
        """MACs per byte moved."""
        return self.macs / self.bytes_moved if self.bytes_moved else 0.0


@dataclasses.dataclass(frozen=True)
class Profile:
    """What :func:`profile` measures; ``str(profile)`` prints the report."""

    model_name: str
    input_shape: tuple
    params: int
    trainable_params: int
    macs: int
    macs_by_type: dict
    fvcore_flops: int
    activation_bytes: int
    peak_activation_bytes: int
    layers: list

    def table(self, top: int | None = None) -> str:
        """The per-layer table as text (``top``: only the most expensive layers)."""
        rows = sorted(self.layers, key=lambda r: -r.macs)[:top] if top else self.layers
        lines = [f"{'layer':<32} {'type':<20} {'output':<18} {'params':>9} {'MACs':>12} "
                 f"{'bytes':>11} {'MAC/B':>6}"]
        for r in rows:
            shape = "x".join(str(d) for d in r.output_shape)
            lines.append(f"{r.name:<32} {r.type:<20} {shape:<18} {r.params:>9,} {r.macs:>12,} "
                         f"{r.bytes_moved:>11,} {r.arithmetic_intensity:>6.2f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        by_type = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in self.macs_by_type.items())
        return (f"{self.model_name} @ {'x'.join(map(str, self.input_shape))}: "
                f"params {self.params:,} (trainable {self.trainable_params:,}), "
                f"MACs {self.macs / 1e6:.2f}M [{by_type}], "
                f"fvcore FLOPs {self.fvcore_flops / 1e6:.2f}M, "
                f"activations {self.activation_bytes / 2**20:.1f} MiB "
                f"(peak {self.peak_activation_bytes / 2**20:.1f} MiB)")

    __repr__ = __str__


def _shapes(tensors) -> list[tuple]:
    tensors = tensors if isinstance(tensors, (list, tuple)) else [tensors]
    return [tuple(1 if d is None else d for d in t.shape) for t in tensors]


def layer_macs(layer, inputs=None, output=None) -> tuple[str | None, int]:
    """``(kind, MACs)`` of one layer call per image (the first, or the call on
    ``inputs`` giving ``output``); kind is "conv", "dense", "matmul", "norm"
    (fvcore FLOPs) or None."""
    kind = layer.__class__.__name__
    in_shape = _shapes(layer.input if inputs is None else inputs)
    out = _shapes(layer.output if output is None else output)[0]
    out_elems = math.prod(out[1:])
    if kind == "Conv2D":
        kh, kw = layer.kernel_size
        return "conv", out_elems * kh * kw * in_shape[0][-1] // layer.groups
    if kind == "DepthwiseConv2D":
        kh, kw = layer.kernel_size
        return "conv", out_elems * kh * kw
    if kind == "Dense":
        return "dense", out_elems * in_shape[0][-1]
    if hasattr(layer, "macs"):
        return "matmul", layer.macs(in_shape)
    if kind in _NORM_FLOPS:
        return "norm", out_elems * _NORM_FLOPS[kind]
    return None, 0


def profile(model) -> Profile:
    """Profile a functional Keras model per image (see the module docstring).

    Example:
        >>> p = keras_mobile.profile(keras_mobile.EMO1M(weights=None))
        >>> round(p.macs / 1e6, 2), p.trainable_params
        (255.24, 1361168)
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "layers"):
        raise TypeError(f"model must be a functional keras.Model. Received: {type(model)!r}.")
    by_type = {"conv": 0, "dense": 0, "matmul": 0, "norm": 0}
    rows, storage, size, last_use = {}, {}, {}, {}
    calls = _calls(model)
    for index, (_, inputs, _) in enumerate(calls):
        for t in inputs:
            last_use[id(t)] = index
    for layer, inputs, output in calls:
        is_input = layer.__class__.__name__ == "InputLayer"
        kind, macs = (None, 0) if is_input else layer_macs(layer, inputs, output)
        if kind:
            by_type[kind] += macs
        out_bytes = 4 * math.prod(_shapes(output)[0][1:])
        in_bytes = 4 * sum(math.prod(s[1:]) for s in _shapes(inputs))
        params = layer.count_params() if layer.built else 0
        if layer.__class__.__name__ in _ALIASES and not is_input:
            storage[id(output)] = storage[id(inputs[0])]
        else:
            storage[id(output)] = id(output)
            size[id(output)] = out_bytes
        if is_input:
            continue
        row = LayerProfile(layer.name, layer.__class__.__name__, _shapes(output)[0][1:],
                           params, 0 if kind == "norm" else macs,
                           in_bytes + out_bytes + 4 * params)
        if id(layer) in rows:  # a shared layer: one row, the first call's shape, all calls' cost
            first = rows[id(layer)]
            row = dataclasses.replace(first, macs=first.macs + row.macs,
                                      bytes_moved=first.bytes_moved + row.bytes_moved)
        rows[id(layer)] = row
    rows = list(rows.values())
    peak = _peak_memory(model, calls, storage, size, last_use)
    macs = by_type["conv"] + by_type["dense"] + by_type["matmul"]
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    return Profile(
        model_name=model.name, input_shape=_shapes(model.inputs)[0][1:],
        params=model.count_params(), trainable_params=int(trainable), macs=macs,
        macs_by_type={"conv": by_type["conv"], "dense": by_type["dense"],
                      "attention_matmul": by_type["matmul"], "normalization": by_type["norm"]},
        fvcore_flops=macs + by_type["norm"], activation_bytes=sum(size.values()),
        peak_activation_bytes=peak, layers=rows)


def _calls(model) -> list[tuple]:
    """``(layer, inputs, output)`` of every layer call in ``model``, in execution order:
    a layer shared by several calls (a detection head run on every pyramid level)
    once per call, and only the calls of this model."""
    by_depth = getattr(model, "_nodes_by_depth", None)
    if by_depth is None:  # not a functional graph: the first call of each layer
        return [(layer, layer.input if isinstance(layer.input, (list, tuple)) else [layer.input],
                 layer.output) for layer in model.layers]
    position = {id(layer): i for i, layer in enumerate(model.layers)}
    nodes = [(-depth, position[id(node.operation)], node)
             for depth, level in by_depth.items() for node in level
             if id(node.operation) in position]
    nodes.sort(key=lambda n: n[:2])  # deepest first; within a depth, the layers' order
    return [(node.operation, list(node.input_tensors), node.output_tensors[0])
            for *_, node in nodes]


def _peak_memory(model, calls, storage, size, last_use) -> int:
    """Peak of live activation bytes, running the calls in order."""
    last = {}
    for tensor_id, index in last_use.items():
        key = storage.get(tensor_id, tensor_id)
        last[key] = max(last.get(key, -1), index)
    for out in model.outputs:
        last[storage[id(out)]] = len(calls)
    live, peak = {}, 0
    for index, (_, _, output) in enumerate(calls):
        key = storage[id(output)]
        if key in size:
            live[key] = size[key]
        peak = max(peak, sum(live.values()))
        for k in [k for k in live if last.get(k, -1) <= index]:
            del live[k]
    return peak
