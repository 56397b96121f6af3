"""What the dense-prediction models (detection, segmentation) share: argument checks,
the backbone, initializers.

Every check runs before a layer is built; messages follow
``keras_mobile.models._common`` (``<arg> must be <...>. Received: <arg>=<value>.``).
"""

from __future__ import annotations

import keras

from keras_mobile import features, registry
from keras_mobile.models._common import _fail, check_weights_arg

# Backbone settings of the official downstream configs that differ from the classifier's
# defaults: EMO-5M attends in 10x10 windows for detection (ssdlite_emo_5M /
# retinanet_emo_5M: window_sizes=[10, 10, 10, 10]) and 16x16 for segmentation
# (deeplabv3_emo_5M / pspnet_emo_5M: [16, 16, 16, 16]); EMO-1M and -2M keep 7.
DETECTION_BACKBONE_KWARGS = {"EMO5M": {"window_size": 10}}
SEGMENTATION_BACKBONE_KWARGS = {"EMO5M": {"window_size": 16}}


def check_num_classes(num_classes):
    """``num_classes``: a positive integer (the foreground classes, background excluded)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        _fail("num_classes", "a positive integer", num_classes, error=TypeError)
    if num_classes < 1:
        _fail("num_classes", "a positive integer", num_classes)


def check_input_shape(input_shape, rule: str, valid_side) -> tuple[int, int, int] | None:
    """A static ``(height, width, 3)`` whose sides pass ``valid_side``; None stays None."""
    if input_shape is None:
        return None
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3 or any(
            isinstance(d, bool) or not isinstance(d, int) for d in input_shape):
        _fail("input_shape", "a static tuple (height, width, 3) of integers", input_shape)
    height, width, channels = input_shape
    if channels != 3:
        _fail("input_shape", "a tuple (height, width, 3) with 3 RGB channels", input_shape)
    if not (valid_side(height) and valid_side(width)):
        _fail("input_shape", rule, input_shape)
    return (height, width, 3)


def resolve_backbone(backbone, backbone_weights, input_shape, *, default_shape, rule: str,
                     valid_side, levels, backbone_kwargs: dict):
    """Check the backbone arguments, then build (or take) the backbone.

    Args:
        backbone: a registered model name or a built ``keras.Model`` with ``P{level}``
            markers.
        backbone_weights: the builder's ``weights`` (None, "imagenet" or a path); None
            when ``backbone`` is a model.
        input_shape: None or ``(height, width, 3)``; with a model, None or its shape.
        default_shape: the input shape when neither gives one.
        rule, valid_side: the detector's input size rule (text) and its test of a side.
        levels: the ``P{level}`` markers the detector reads.
        backbone_kwargs: builder arguments by registered name (the official configs'
            settings, e.g. :data:`DETECTION_BACKBONE_KWARGS`).

    Returns:
        The backbone ``keras.Model``.
    """
    check_input_shape(input_shape, rule, valid_side)
    if isinstance(backbone, str):
        try:
            entry = registry.get_entry(backbone)
        except ValueError as error:  # the registry's suggestions, about `backbone`
            detail = str(error).replace(f"Unknown model. Received: name={backbone!r}.",
                                        f"Received: backbone={backbone!r}.")
            raise ValueError("backbone must be the name of a keras_mobile model or a "
                             f"keras.Model. {detail}") from None
        check_weights_arg(backbone_weights, ("imagenet",))
        kwargs = dict(backbone_kwargs.get(entry.name, {}))
        return entry.builder(include_top=False, weights=backbone_weights,
                             input_shape=tuple(input_shape or default_shape), **kwargs)
    if not isinstance(backbone, keras.Model):
        _fail("backbone", "the name of a keras_mobile model or a keras.Model", backbone,
              error=TypeError)
    if backbone_weights is not None:
        _fail("backbone_weights", "None when backbone is a keras.Model (load its weights "
              "into the model first)", backbone_weights)
    available = features.feature_levels(backbone)
    missing = [level for level in levels if level not in available]
    if missing:
        raise ValueError(
            f"backbone must mark the feature maps {', '.join(f'P{lv}' for lv in levels)} "
            f"(Identity layers named P{{level}} at stride 2**level, as every keras_mobile "
            f"model does); it marks {available}. Received: backbone={backbone.name!r}.")
    shape = tuple(backbone.inputs[0].shape[1:])
    if any(d is None for d in shape):
        _fail("backbone", "a model with a static input shape", backbone.name)
    if input_shape is not None and tuple(input_shape) != shape:
        _fail("input_shape", f"None or the backbone's input shape {shape}", input_shape)
    if not (valid_side(shape[0]) and valid_side(shape[1])):
        _fail("input_shape", rule, shape,
              f"(the input shape of backbone {backbone.name!r}).")
    return backbone


def model_input(backbone):
    """The backbone's input tensor (its list when it has several)."""
    return backbone.inputs[0] if len(backbone.inputs) == 1 else backbone.inputs


def check_name(name):
    if name is not None and not isinstance(name, str):
        _fail("name", "a string or None", name, error=TypeError)


def initialize(model, backbone, prefixes: tuple[str, ...], stddev: float):
    """Draw the kernels of the detector's own convolutions (not ``backbone``'s) whose names
    start with ``prefixes`` from N(0, stddev) (the reference's init_cfg, for layers built
    by ``blocks.conv_bn``), each kernel its own draw."""
    skip = {id(layer) for layer in backbone.layers}
    seed = keras.random.SeedGenerator()  # follows keras.utils.set_random_seed
    for layer in model.layers:
        if id(layer) not in skip and layer.name.startswith(prefixes) and isinstance(
                layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            layer.kernel.assign(keras.random.normal(layer.kernel.shape, stddev=stddev,
                                                    seed=seed))


def head_from_record(record: dict, key: str, heads: dict, backbone_kwargs: dict, **kwargs):
    """The dense model of a run (its ``run.json`` record), freshly initialized: the
    registered backbone ``record["model"]`` (with ``backbone_kwargs`` of its name and
    ``model_kwargs["backbone_kwargs"]``) under ``heads[model_kwargs[key]]``, at the
    recorded image size and classes; ``kwargs`` go to the head's builder."""
    from keras_mobile import registry

    model_kwargs = record.get("model_kwargs", {})
    name = model_kwargs.get(key)
    if name not in heads:
        raise ValueError(f"model_kwargs[{key!r}] must be one of {list(heads)}. "
                         f"Received: {name!r} (run of model {record.get('model')!r}).")
    size = int(record["image_size"])
    entry = registry.get_entry(record["model"])
    backbone = entry.builder(include_top=False, weights=None, input_shape=(size, size, 3),
                             **{**backbone_kwargs.get(entry.name, {}),
                                **model_kwargs.get("backbone_kwargs", {})})
    return heads[name](backbone, num_classes=int(record["num_classes"]),
                       backbone_weights=None, **kwargs)


def trained_head(result, from_record, quantize: str):
    """The model of a dense run (``result``, an engine ``TrainResult``) rebuilt outside
    any strategy with the run's final weights: ``from_record(result.record)``, or for a
    QAT run its twin made by ``quantize`` ("module:function", imported then: tfmot)."""
    model = from_record(result.record)
    if result.record.get("qat"):
        import importlib

        module, function = quantize.split(":")
        model = getattr(importlib.import_module(module), function)(model)
    model.set_weights(result.weights)
    return model
