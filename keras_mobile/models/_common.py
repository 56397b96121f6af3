"""The one place for what every builder shares: argument checks, the input,
in-model preprocessing, feature markers, the classification head and weights.

Every public builder calls :func:`check_args` first, so a bad argument fails with
a clear message before any layer is created, then builds its body between
:func:`model_input` and :func:`finish`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import NamedTuple

import keras
import numpy as np
from keras import layers

# Mean and standard deviation of ImageNet in [0, 255] RGB.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# The "tf" convention of MobileNet V1/V2/V3: [0, 255] -> [-1, 1].
INCEPTION_MEAN = (127.5, 127.5, 127.5)
INCEPTION_STD = (127.5, 127.5, 127.5)

_POOLINGS = (None, "avg", "max")


class Family(NamedTuple):
    """What a builder tells :func:`check_args` and :func:`finish` about its family.

    Attributes:
        name: family name used in messages and weight registries (e.g. "emo").
        default_size: the paper's input resolution.
        min_size: smallest spatial size the network accepts.
        mean: per-channel mean in [0, 255] RGB, applied by the in-model preprocessing.
        std: per-channel standard deviation in [0, 255] RGB.
    """

    name: str
    default_size: int
    min_size: int = 32
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (halves up), never
    below ``min_value`` (default ``divisor``) nor more than 10% below ``value``.

    This is the rule of the TF-slim MobileNets, keras.applications and the
    official MobileNeXt code.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def _fail(arg: str, expectation: str, value, hint: str = "", error=ValueError):
    message = f"{arg} must be {expectation}. Received: {arg}={value!r}."
    raise error(f"{message} {hint}".strip())


def check_positive(arg: str, value, *, upper: float | None = None, integer: bool = False):
    """Check a width or ratio knob: a positive number (optionally <= upper)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        _fail(arg, kind, value, error=TypeError)
    if not value > 0 or (upper is not None and value > upper):
        bound = f"in (0, {upper}]" if upper is not None else "positive"
        _fail(arg, bound, value)


class AppArgs(NamedTuple):
    """The keras.applications arguments every builder takes, with their meaning."""

    include_top: bool = True
    weights: object = "imagenet"
    input_tensor: object = None
    input_shape: object = None
    pooling: object = None
    classes: int = 1000
    classifier_activation: object = "softmax"
    include_preprocessing: bool = True
    name: str | None = None


def check_rate(arg: str, value):
    """Check a dropout / drop-path rate: a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(arg, "a number in [0, 1)", value, error=TypeError)
    if not 0 <= value < 1:
        _fail(arg, "in [0, 1)", value)


def square_size(args: AppArgs, family: Family) -> int | None:
    """The requested side length (from input_tensor, input_shape or the default) if
    the input is square, else None; decides whether ImageNet weights exist."""
    shape = args.input_shape
    if args.input_tensor is not None and hasattr(args.input_tensor, "shape"):
        shape = tuple(args.input_tensor.shape[1:])
    if shape is None:
        return family.default_size
    if not isinstance(shape, (tuple, list)) or len(shape) < 2 or shape[0] != shape[1]:
        return None
    return shape[0]


def check_args(
    family: Family,
    args: AppArgs,
    *,
    available_weights: Sequence[str] = (),
    imagenet_note: str = "",
) -> tuple[int, int, int]:
    """Validate the keras.applications arguments; return the static input shape.

    Args:
        family: the family's :class:`Family`.
        args: the builder's :class:`AppArgs`.
        available_weights: named weights that exist for this exact variant
            (``("imagenet",)`` or ``()``).
        imagenet_note: why ImageNet weights are missing, for the error message.

    Returns:
        ``(height, width, channels)``, fully static.

    Raises:
        ValueError, TypeError or FileNotFoundError naming the argument.
    """
    for arg in ("include_top", "include_preprocessing"):
        if not isinstance(getattr(args, arg), bool):
            _fail(arg, "True or False", getattr(args, arg), error=TypeError)
    weights, classes = args.weights, args.classes
    check_weights_arg(weights, available_weights, imagenet_note)
    if args.pooling not in _POOLINGS:
        _fail("pooling", 'None, "avg" or "max"', args.pooling)
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        _fail("classes", "a positive integer", classes)
    if weights == "imagenet" and args.include_top and classes != 1000:
        _fail(
            "classes",
            '1000 when weights="imagenet" and include_top=True',
            classes,
            "Pass include_top=False to put your own classifier on the ImageNet features, "
            "or weights=None to train from scratch.",
        )
    act = args.classifier_activation
    if not (act is None or isinstance(act, str) or callable(act)):
        _fail("classifier_activation", "None, a string or a callable", act, error=TypeError)
    if weights == "imagenet" and args.include_top and act not in (None, "softmax"):
        _fail("classifier_activation", 'None or "softmax" with weights="imagenet"', act)
    if args.name is not None and not isinstance(args.name, str):
        _fail("name", "a string or None", args.name, error=TypeError)
    return _input_shape(family, args.input_tensor, args.input_shape)


def check_weights_arg(weights, available: Sequence[str] = (), imagenet_note: str = ""):
    """``weights`` is None, one of ``available`` or the path of an existing file."""
    if weights is None or (isinstance(weights, str) and weights in available):
        return
    if not isinstance(weights, (str, os.PathLike)):
        _fail("weights", 'None, "imagenet" or a path', weights, error=TypeError)
    path = os.fspath(weights)
    looks_like_path = os.sep in path or "." in os.path.basename(path)
    if looks_like_path:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"weights file not found. Received: weights={path!r}. "
                "Pass weights=None to train from scratch.")
        return
    if path == "imagenet":
        raise ValueError(" ".join(part for part in (
            'weights="imagenet" is not available for this model.', imagenet_note,
            "Pass weights=None or the path of a weights file.") if part))
    _fail("weights", 'None, "imagenet" or a path', weights,
          "Pass weights=None to train from scratch.")


def _input_shape(family: Family, input_tensor, input_shape) -> tuple[int, int, int]:
    if input_tensor is not None:
        if not keras.backend.is_keras_tensor(input_tensor):
            _fail("input_tensor", "a Keras tensor (the output of keras.Input)", input_tensor,
                  error=TypeError)
        tensor_shape = tuple(input_tensor.shape[1:])
        if input_shape is not None and tuple(input_shape) != tensor_shape:
            _fail("input_shape", f"the shape of input_tensor, {tensor_shape}", input_shape)
        input_shape = tensor_shape
    if input_shape is None:
        return (family.default_size, family.default_size, 3)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        _fail("input_shape", "a tuple (height, width, 3)", input_shape)
    height, width, channels = input_shape
    if channels != 3:
        _fail("input_shape", "a tuple (height, width, 3) with 3 RGB channels", input_shape)
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in (height, width)):
        _fail("input_shape", "fully static, e.g. (224, 224, 3)", input_shape,
              "keras_mobile models are built for one resolution so that they export to "
              "TFLite as built; build another model for another resolution.")
    if min(height, width) < family.min_size:
        _fail("input_shape", f"at least ({family.min_size}, {family.min_size}, 3) for "
              f"{family.name}", input_shape)
    return (height, width, 3)


def model_input(args: AppArgs, shape, family: Family):
    """``(inputs, x)``: the model's input tensor (``input_tensor`` itself when
    given) and ``x``, the input after the in-model preprocessing."""
    inputs = args.input_tensor
    if inputs is None:
        inputs = keras.Input(shape=shape, name="input")
    return inputs, preprocessing(inputs, family, args.include_preprocessing)


def preprocessing(x, family: Family, include_preprocessing: bool = True):
    """Raw [0, 255] RGB -> the family's normalized input, as one Rescaling layer.

    Equal constants become scalars and per-channel ones are tiled along the
    width: XNNPACK then broadcasts a scalar or rows of ``W * 3`` values instead
    of rows of 3, which made the two ops cost ~0.3-1 ms at 224 px (measured,
    1 thread). The arithmetic is unchanged.
    """
    if not include_preprocessing:
        return x
    scale = [1.0 / s for s in family.std]
    offset = [-m / s for m, s in zip(family.mean, family.std, strict=True)]
    width = x.shape[2]
    if len(set(scale)) == 1 and len(set(offset)) == 1:
        scale, offset = scale[0], offset[0]  # scalars: XNNPACK's fastest broadcast
    elif width is not None:
        scale = np.tile(np.asarray(scale, "float32"), (width, 1)).tolist()
        offset = np.tile(np.asarray(offset, "float32"), (width, 1)).tolist()
    return layers.Rescaling(scale, offset=offset, name="rescaling")(x)


def preprocess_input(x, data_format=None):  # noqa: ARG001  (keras.applications' signature)
    """A pass-through, as keras.applications' MobileNetV3 and EfficientNet:
    keras_mobile models normalize inside (``include_preprocessing=True``) and
    take raw [0, 255] RGB. For ``include_preprocessing=False`` use the family's
    ``normalize``."""
    return x


def decode_predictions(preds, top: int = 5):
    """ImageNet ``(class_id, name, score)`` tuples, as keras.applications (needs the
    class index file, downloaded once into the Keras cache)."""
    try:
        return keras.applications.imagenet_utils.decode_predictions(preds, top=top)
    except Exception as error:
        if "fetch failure" not in str(error):
            raise
        raise OSError("decode_predictions needs imagenet_class_index.json, which could not be "
                      f"downloaded ({error}). Put it in ~/.keras/models/ and try again.") from error


def normalize(x, family: Family):
    """Numpy/tensor version of the in-model preprocessing (for include_preprocessing=False)."""
    mean = keras.ops.convert_to_tensor(family.mean, dtype="float32")
    std = keras.ops.convert_to_tensor(family.std, dtype="float32")
    return (keras.ops.cast(x, "float32") - mean) / std


def feature_marker(x, stride: int):
    """Name the feature map at total stride ``stride`` ``P{log2(stride)}`` (an Identity)."""
    level = int(math.log2(stride))
    return layers.Identity(name=f"P{level}")(x)


def next_level(x, stride: int, strides: int):
    """Call before a block with ``strides``: when it downsamples a map of total stride
    >= 4, mark that map as a pyramid level. Returns ``(x, total stride after the block)``."""
    if strides > 1 and stride >= 4:
        x = feature_marker(x, stride)
    return x, stride * strides


def head(
    x,
    args: AppArgs,
    *,
    dropout: float = 0.0,
    style: str = "dense",
    hidden: tuple[int, str] | None = None,
):
    """Pooling and classifier, named as in keras.applications.

    Args:
        style: "dense" (GAP -> dropout -> Dense) or "conv" (GAP keepdims ->
            [hidden 1x1 conv + act] -> dropout -> 1x1 conv -> flatten ->
            activation), the latter as MobileNet V1/V3 lay out their weights.
        hidden: ``(filters, activation)`` of the 1x1 conv before the classifier
            (MobileNetV3), or None.
    """
    from keras_mobile import blocks  # noqa: PLC0415  (blocks imports this module)

    if not args.include_top:
        if args.pooling == "avg":
            return layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if args.pooling == "max":
            return layers.GlobalMaxPooling2D(name="max_pool")(x)
        return x
    if style == "dense":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name="top_dropout")(x)
        return layers.Dense(args.classes, activation=args.classifier_activation,
                            name="predictions")(x)
    x = layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)
    if hidden is not None:
        filters, act = hidden
        x = layers.Conv2D(filters, 1, use_bias=True, name="top_hidden_conv")(x)
        x = blocks.activation(x, act, name="top_hidden_act")
    if dropout:
        x = layers.Dropout(dropout, name="top_dropout")(x)
    x = layers.Conv2D(args.classes, 1, name="logits")(x)
    x = layers.Flatten(name="flatten")(x)
    return layers.Activation(args.classifier_activation, name="predictions")(x)


def finish(inputs, outputs, args: AppArgs, *, default_name: str, family: Family,
           variant: dict):
    """Create the model and load ``args.weights`` (None, "imagenet" or a path).

    ``variant`` identifies the ImageNet weights (family knobs, size, include_top).
    """
    sources = keras.utils.get_source_inputs(inputs)
    model = keras.Model(sources[0] if len(sources) == 1 else sources, outputs,
                        name=args.name or default_name)
    if args.weights is not None:
        from keras_mobile import weights as weights_lib  # noqa: PLC0415

        weights_lib.load_into(model, args.weights, family=family.name,
                              variant=dict(variant, include_top=args.include_top))
    return model
