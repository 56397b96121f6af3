"""Keras 3 -> tf_keras, by walking the functional graph (no architecture written twice).

A neutral module: it imports neither ``keras_mobile.tflite`` nor
``keras_mobile.quantization`` (both use it: the int8 converter gets a model's
rewritten twin, quantization-aware training quantizes it), nor tfmot.

tfmot only quantizes tf_keras (Keras 2) models, while keras_mobile builds Keras 3
models. :func:`to_tf_keras` re-creates every layer of a Keras 3 functional model
in tf_keras from its config, in the Keras 3 graph's order, calls it on the
translated inputs, and copies the weights layer by layer: the same builder code
thus yields both graphs, and the copy is exact.

Config keys that only Keras 3 knows are cleaned (dtype policy dicts become their
name, serialized objects lose their ``module``), initializers are dropped (the
weights are copied) and Keras-3-only keys are dropped when they hold their
default (``lora_rank=None``, ...); one that would change the computation
raises. Activations whose tf_keras namesake differs (``hard_sigmoid`` is
``clip(0.2x + 0.5)`` in tf_keras, ``relu6(x + 3) / 6`` in Keras 3) map to
:func:`hard_sigmoid` / :func:`hard_swish`, Keras 3's definitions.

With ``for_quantization=True`` activations are rewritten into layers whose int8
TFLite ops XNNPACK runs (it has no int8 HARD_SWISH or GELU: each would split the
graph into one more delegate partition), for QAT and post-training int8 alike:

* hard-swish ``x * relu6(x + 3) / 6`` -> ``Multiply([x, hard_sigmoid_gate(x)])``,
  ``relu6(x + 3) * c`` with ``c`` one float32 step above 1/6 (relative 9e-8):
  the TFLite converter fuses ``x * relu6(x + 3) * (1/6)`` back into HARD_SWISH
  when nothing separates the ops, as in post-training int8 (QAT's fake-quantized
  gate does). Measured: ``(x / 6) * relu6(x + 3)``, which does not fuse either,
  makes MobileNetV3Small's int8 graph 31% slower in XNNPACK;
* GELU -> ``x * sigmoid(x * (a + b * x^2))`` with ``a = 2 sqrt(2/pi)``,
  ``b = 0.044715 a``: the tanh form of GELU (``0.5 (1 + tanh z) = sigmoid(2z)``),
  max |error| 4.7e-4 against the exact GELU (erf), far below an int8 step;
* hard-sigmoid stays one layer (ADD+RELU6, MUL in TFLite, all delegated).
"""

from __future__ import annotations

import functools
import inspect
import math

import numpy as np

GELU_A = 2.0 * math.sqrt(2.0 / math.pi)
GELU_B = 0.044715 * GELU_A
# Keras 3 activation names -> tf_keras names (None: keras_mobile's own function).
_ACTIVATIONS = {"silu": "swish", "swish": "swish", "hard_silu": None, "hard_swish": None,
                "hard_sigmoid": None}
# Keras-3-only arguments whose value here is what the tf_keras layer always does, so
# dropping them changes nothing: tf_keras' Resizing is channels_last only, and its
# ``fill_mode`` matters only with ``pad_to_aspect_ratio`` (refused when set).
_KERAS3_DEFAULTS = {"data_format": "channels_last", "fill_mode": "constant"}
# Arguments every tf_keras layer takes through ``**kwargs``.
_BASE_KWARGS = {"name", "trainable", "dtype", "dynamic"}
# tfmot's fake-quantization layers: a model holding one is quantization-aware.
QAT_LAYERS = ("QuantizeLayer", "QuantizeWrapper", "QuantizeWrapperV2")


def hard_sigmoid(x):
    """Keras 3's ``hard_sigmoid``: ``relu6(x + 3) / 6``."""
    import tensorflow as tf  # noqa: PLC0415

    return tf.nn.relu6(x + 3.0) / 6.0


# One float32 step above 1/6: the converter's HARD_SWISH patterns match 1/6 exactly.
_GATE_SCALE = float(np.nextafter(np.float32(1.0 / 6.0), np.float32(1.0)))


def hard_sigmoid_gate(x):
    """``relu6(x + 3) / 6`` (within a relative 9e-8) that the TFLite converter
    does not fuse with a following ``x *`` into HARD_SWISH."""
    import tensorflow as tf  # noqa: PLC0415

    return tf.nn.relu6(x + 3.0) * _GATE_SCALE


def hard_swish(x):
    """Keras 3's ``hard_silu`` / ``hard_swish``: ``x * relu6(x + 3) / 6``."""
    return x * hard_sigmoid(x)


# keras_mobile's activation functions in tf_keras graphs (registered as keras_mobile>name).
ACTIVATIONS = (hard_sigmoid, hard_swish, hard_sigmoid_gate)


@functools.cache
def tf_keras_objects() -> dict:
    """The custom objects tf_keras needs to rebuild a translated model (layers and
    activations, registered as ``keras_mobile>Name``)."""
    import tf_keras  # noqa: PLC0415

    from keras_mobile.layers import tf_keras_layers  # noqa: PLC0415

    register = tf_keras.saving.register_keras_serializable(package="keras_mobile")
    functions = {fn.__name__: register(fn) for fn in ACTIVATIONS}
    layers = tf_keras_layers()
    objects = {f"keras_mobile>{name}": obj for name, obj in layers.items()}
    objects.update(layers)  # the legacy HDF5 format names layers without package
    objects.update({f"keras_mobile>{name}": fn for name, fn in functions.items()})
    return objects


def to_tf_keras(model, *, for_quantization: bool = False, logits: bool = False):
    """The tf_keras twin of a Keras 3 functional ``model``, with its weights.

    Args:
        model: a Keras 3 functional model (any keras_mobile model).
        for_quantization: rewrite hard-swish and GELU into layers that
            quantize into XNNPACK-friendly int8 ops (see the module docstring);
            False gives the exact twin.
        logits: drop a softmax that ends the model (an ``Activation`` or the
            activation of the last ``Dense``), so the twin outputs logits.

    Returns:
        A ``tf_keras.Model`` with the same layer names (plus, with
        ``for_quantization``, the ``{name}_gate``/``_square``/... parts of
        rewritten activations) and the same weights, layer by layer.

    Raises:
        ValueError: ``model`` is not a Keras 3 functional model, or holds a
            layer tf_keras cannot express (the message names it).

    Example:
        >>> twin = to_tf_keras(keras_mobile.MobileNetV2(weights=None))
    """
    import tf_keras  # noqa: PLC0415

    nodes = _graph(model)
    tensors = {}
    for x, source in zip(model.inputs, _input_layers(model), strict=True):
        tensors[id(x)] = tf_keras.Input(shape=tuple(x.shape[1:]), batch_size=x.shape[0],
                                        dtype=x.dtype, name=source.name)
    heads = {x._keras_history.operation.name for x in model.outputs}  # noqa: SLF001
    created = {}
    for node in nodes:
        layer = node.operation
        if layer.name not in created:
            created[layer.name] = _translate(layer, tf_keras, for_quantization,
                                             logits and layer.name in heads)
        args, kwargs = node.arguments.fill_in(tensors)
        outputs = created[layer.name](*args, **kwargs)
        for x, y in zip(node.outputs, _flatten(outputs), strict=True):
            tensors[id(x)] = y
    outputs = [tensors[id(x)] for x in model.outputs]
    twin = tf_keras.Model([tensors[id(x)] for x in model.inputs] if len(model.inputs) > 1
                          else tensors[id(model.inputs[0])],
                          outputs if len(outputs) > 1 else outputs[0], name=model.name)
    copy_weights(model, twin)
    return twin


def has_rewrites(model) -> bool:
    """Whether ``to_tf_keras(model, for_quantization=True)`` rewrites any layer
    of the Keras 3 functional ``model`` (hard-swish or GELU)."""
    return _is_functional(model) and any(_activation(node.operation) in _REWRITES
                                         for node in _graph(model))


def translation_problem(model) -> str | None:
    """Why :func:`to_tf_keras` cannot translate ``model``, or None when it can.

    Checks, without building anything, what ``to_tf_keras`` refuses: a model
    that is not a Keras 3 functional model, a node that is not a layer (a
    ``keras.ops`` call, as in keras.applications' MobileNetV3: ``x + 3.0``), a
    layer with no tf_keras twin (``Lambda``, custom layers) or with a setting
    tf_keras cannot express. The message is the ``ValueError`` ``to_tf_keras``
    would raise.
    """
    import tf_keras  # noqa: PLC0415

    if not _is_functional(model):
        return _not_functional(model)
    for node in _graph(model):
        try:
            _config(node.operation, _tf_keras_class(node.operation, tf_keras))
        except _Untranslatable as problem:
            return str(problem)
    return None


def is_translatable(model) -> bool:
    """Whether :func:`to_tf_keras` translates ``model`` (see :func:`translation_problem`)."""
    return translation_problem(model) is None


def check_functional(model) -> None:
    """Raise a ``ValueError`` unless ``model`` is a Keras 3 functional model."""
    _graph(model)


def is_quantization_aware(model) -> bool:
    """Whether ``model`` carries tfmot fake-quantization layers (by class name:
    tfmot is not imported)."""
    return any(type(layer).__name__ in QAT_LAYERS for layer in getattr(model, "layers", ()))


def copy_weights(source, target):
    """Copy every weight of ``source`` into the layer of ``target`` with the same
    name (exact: the values are assigned, not recomputed)."""
    by_name = {layer.name: layer for layer in target.layers}
    for layer in source.layers:
        values = layer.get_weights()
        if values:
            by_name[layer.name].set_weights(values)


# -- internals ---------------------------------------------------------------

class _Untranslatable(ValueError):
    """A layer ``to_tf_keras`` cannot translate (raised before anything is built)."""


def _not_functional(model) -> str:
    kind = f"{type(model).__module__}.{type(model).__name__}"
    return ("model must be a Keras 3 functional model, e.g. one built by keras_mobile "
            f"(keras_mobile.get_model(...)). Received: model of type {kind}."
            + (" It is already a tf_keras model." if kind.startswith("tf_keras") else ""))


def _graph(model):
    """The model's nodes in execution order (deepest first, as Keras 3 runs them)."""
    if not _is_functional(model):
        raise ValueError(_not_functional(model))
    depths = sorted(model._nodes_by_depth, reverse=True)  # noqa: SLF001
    return [node for depth in depths for node in model._nodes_by_depth[depth]  # noqa: SLF001
            if node.operation is not None and not node.is_input]


def _is_functional(model) -> bool:
    import keras  # noqa: PLC0415

    return isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth")


def _input_layers(model):
    return [x._keras_history.operation for x in model.inputs]  # noqa: SLF001


def _flatten(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _clean(value):
    """A Keras 3 config value in the form tf_keras deserializes."""
    if isinstance(value, dict):
        if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            return value["config"]["name"]
        if "class_name" in value and "config" in value:
            return {"class_name": value["class_name"], "config": _clean(value["config"])}
        return {key: _clean(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clean(v) for v in value)
    return value


@functools.cache
def _accepted(cls) -> frozenset:
    """Constructor arguments of a tf_keras layer class (its MRO's explicit ones)."""
    names = set(_BASE_KWARGS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names.update(p.name for p in inspect.signature(init).parameters.values()
                         if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
    return frozenset(names - {"self"})


def _tf_keras_class(layer, tf_keras):
    import keras  # noqa: PLC0415

    from keras_mobile.layers import tf_keras_layers  # noqa: PLC0415

    name = type(layer).__name__
    module = type(layer).__module__
    if not isinstance(layer, keras.layers.Layer):
        cls = None  # a keras.ops call (x + 3.0 is ops.numpy.Add, not the Add layer)
    elif module.startswith("keras_mobile"):
        cls = tf_keras_layers().get(name)
    elif module.startswith("keras.") and name != "Lambda":
        cls = getattr(tf_keras.layers, name, None)
    else:
        cls = None
    if cls is None:
        op = "" if isinstance(layer, keras.layers.Layer) else " (a keras.ops call, not a layer)"
        raise _Untranslatable(
            f"Layer {layer.name!r} ({module}.{name}){op} has no tf_keras twin, so the model "
            "cannot be translated to tf_keras (nor quantized). Supported: Keras layers that "
            "tf_keras also has (no Lambda) and keras_mobile.layers. Received: a model "
            f"containing {layer.name!r} of type {name}.")
    return cls


def _config(layer, cls):
    # Initializers are moot (the weights are copied) and Keras 3's take arguments
    # tf_keras' do not (GlorotUniform's input_axes).
    config = {key: value for key, value in _clean(layer.get_config()).items()
              if not key.endswith("_initializer")}
    accepted = _accepted(cls)
    for key in [k for k in config if k not in accepted]:
        if config[key] not in (None, False, 0, {}, [], ()) and (
                config[key] != _KERAS3_DEFAULTS.get(key)):  # a default of the Keras 3 extras
            raise _Untranslatable(
                f"Layer {layer.name!r} ({type(layer).__name__}) sets {key}={config[key]!r}, "
                "which tf_keras cannot express. Received: a model containing that layer.")
        del config[key]
    activation = config.get("activation")
    if isinstance(activation, str) and activation in _ACTIVATIONS:
        config["activation"] = _ACTIVATIONS[activation] or (
            "keras_mobile>hard_sigmoid" if activation == "hard_sigmoid"
            else "keras_mobile>hard_swish")
    return config


def _activation(layer) -> str | None:
    """The activation name of a Keras 3 ``Activation`` layer, else None."""
    if type(layer).__name__ != "Activation":
        return None
    activation = layer.get_config().get("activation")
    return activation if isinstance(activation, str) else None


def _translate(layer, tf_keras, for_quantization: bool, drop_softmax: bool = False):
    """A callable building ``layer``'s tf_keras twin (a layer, or for rewritten
    activations a function creating a few layers) on tf_keras tensors."""
    cls = _tf_keras_class(layer, tf_keras)
    objects = tf_keras_objects()
    config = _config(layer, cls)
    if drop_softmax and config.get("activation") == "softmax":
        if cls is tf_keras.layers.Activation:
            return lambda x: x
        config["activation"] = "linear"
    if for_quantization and cls is tf_keras.layers.Activation:
        rewrite = _REWRITES.get(_activation(layer))
        if rewrite is not None:
            return functools.partial(rewrite, tf_keras, config["name"])
    with tf_keras.utils.custom_object_scope(objects):
        return cls.from_config(config)


def _hard_swish_layers(tf_keras, name, x):
    gate = tf_keras.layers.Activation("keras_mobile>hard_sigmoid_gate", name=f"{name}_gate")(x)
    return tf_keras.layers.Multiply(name=name)([x, gate])


def _gelu_layers(tf_keras, name, x):
    layers = tf_keras.layers
    square = layers.Multiply(name=f"{name}_square")([x, x])
    poly = layers.Rescaling(GELU_B, offset=GELU_A, name=f"{name}_poly")(square)
    z = layers.Multiply(name=f"{name}_z")([x, poly])
    gate = layers.Activation("sigmoid", name=f"{name}_gate")(z)
    return layers.Multiply(name=name)([x, gate])


# Keras 3 activation name -> its rewrite (with ``for_quantization``).
_REWRITES = {"hard_swish": _hard_swish_layers, "hard_silu": _hard_swish_layers,
             "gelu": _gelu_layers}


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """NumPy reference of the GELU rewrite (for tests and docs)."""
    return x / (1.0 + np.exp(-x * (GELU_A + GELU_B * x * x)))
