"""Multi-scale features for detection and segmentation heads.

Every keras_mobile model names its feature maps ``P{level}`` (an Identity layer,
free in TFLite) at total stride ``2**level``: ``P2`` (stride 4) ... ``P5``
(stride 32), each the last map at that stride.
"""

from __future__ import annotations

import keras


def feature_levels(model) -> list[int]:
    """The pyramid levels ``model`` marks, e.g. ``[2, 3, 4, 5]``."""
    return sorted(int(layer.name[1:]) for layer in model.layers
                  if layer.name[:1] == "P" and layer.name[1:].isdigit())


def feature_pyramid(model, levels=(2, 3, 4, 5), name: str | None = None):
    """A model from ``model``'s input to its ``P{level}`` maps (shared weights).

    Args:
        model: any keras_mobile model (``include_top`` does not matter).
        levels: which levels to return.

    Returns:
        A ``keras.Model`` whose output is a dict ``{"P3": ..., "P4": ...}``.

    Example:
        >>> backbone = keras_mobile.EMO5M(weights=None, include_top=False)
        >>> fpn_inputs = keras_mobile.feature_pyramid(backbone, levels=(3, 4, 5))
    """
    available = feature_levels(model)
    missing = [level for level in levels if level not in available]
    if not levels or missing:
        raise ValueError(f"levels must be a non-empty subset of {available} for model "
                         f"{model.name!r}. Received: levels={tuple(levels)!r}.")
    outputs = {f"P{level}": model.get_layer(f"P{level}").output for level in levels}
    return keras.Model(model.inputs, outputs, name=name or f"{model.name}_pyramid")


OUTPUT_STRIDES = (8, 16, 32)


def _first_input(layer):
    """The map ``layer`` reads, before any ``ZeroPadding2D`` in front of it."""
    inputs = layer.input
    tensor = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
    source = tensor._keras_history.operation
    if source.__class__.__name__ == "ZeroPadding2D":
        return _first_input(source)
    return tensor


def with_output_stride(model, output_stride: int, name: str | None = None):
    """``model`` with its maps beyond total stride ``output_stride`` kept at that stride:
    DeepLab's atrous backbone (torchvision's ``replace_stride_with_dilation``).

    Every convolution that would downsample a map already at ``output_stride`` gets
    stride 1 (its dilation stays the one of the maps it reads, as TF-slim's and Model
    Garden's MobileNets and torchvision's ResNets do; torchvision's MobileNetV3 dilates that
    convolution too), and every later
    convolution of kernel > 1 a dilation of ``stride it had / output_stride``; the explicit
    padding before a stride-2 ``"valid"`` convolution becomes the dilated kernel's
    symmetric padding. The weights are ``model``'s (the same variables' values), the
    layer names too, so ``P4`` / ``P5`` still name the last maps of stages 3 and 4 (now
    at stride ``output_stride`` when it is below theirs).

    Args:
        model: a functional keras_mobile model (any input size divisible by 32) without
            window attention (EMO's windows are laid out for its maps at build time).
        output_stride: 8, 16 or 32 (32: ``model`` itself).

    Returns:
        A new ``keras.Model`` (``model`` when ``output_stride`` is 32).
    """
    if isinstance(output_stride, bool) or output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {list(OUTPUT_STRIDES)}. "
                         f"Received: output_stride={output_stride!r}.")
    if output_stride == 32:
        return model
    attention = [layer.name for layer in model.layers
                 if layer.__class__.__name__ == "WindowAttention"]
    if attention:
        raise ValueError(f"output_stride must be 32 for a backbone with window attention "
                         f"(EMO): its attention layers pad each map to whole windows of its "
                         f"size at build time, and the official EMO has no dilated stage. "
                         f"Received: output_stride={output_stride}, model={model.name!r}.")
    height = model.inputs[0].shape[1]
    reads = {}  # layer name -> total stride of the map it reads
    consumers = {}  # layer name -> the layer that reads its output
    for layer in model.layers:
        if layer.__class__.__name__ == "InputLayer":
            continue
        shape = _first_input(layer).shape
        if len(shape) == 4 and shape[1]:
            reads[layer.name] = height // shape[1]
        for node in layer._outbound_nodes:
            consumers.setdefault(layer.name, node.operation.name)
    config = model.get_config()
    dilated = {}  # name of a conv whose stride became 1 -> (dilation, kernel)
    for entry in config["layers"]:
        kind, layer_config = entry["class_name"], entry["config"]
        stride = reads.get(layer_config["name"])
        if stride is None or stride < output_stride:
            continue
        if kind in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D"):
            kernel = tuple(layer_config["kernel_size"])
            dilation = stride // output_stride
            if max(layer_config["strides"]) > 1:
                layer_config["strides"] = (1, 1)
                dilated[layer_config["name"]] = (dilation, kernel)
            elif dilation == 1:
                continue
            if max(kernel) > 1:
                layer_config["dilation_rate"] = (dilation, dilation)
        elif kind in ("MaxPooling2D", "AveragePooling2D") and max(layer_config["strides"]) > 1:
            raise ValueError(f"output_stride {output_stride} needs the backbone's stride-2 "
                             f"layers to be convolutions; {layer_config['name']!r} is a "
                             f"{kind}. Received: model={model.name!r}.")
    for entry in config["layers"]:
        if entry["class_name"] != "ZeroPadding2D":
            continue
        conv = consumers.get(entry["config"]["name"])
        if conv in dilated:
            dilation, kernel = dilated[conv]
            pad_h, pad_w = (dilation * (k // 2) for k in kernel)
            entry["config"]["padding"] = ((pad_h, pad_h), (pad_w, pad_w))
    rebuilt = model.__class__.from_config(config)
    rebuilt.set_weights(model.get_weights())
    if name is not None:
        rebuilt.name = name
    return rebuilt
