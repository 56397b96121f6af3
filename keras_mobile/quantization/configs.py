"""tfmot QuantizeConfigs for the layers tfmot's default 8-bit registry rejects,
and the rule that picks one per layer. Importing this module imports tfmot
(through :func:`keras_mobile.quantization.tfmot_adapter.tfmot`)."""

from __future__ import annotations

from keras_mobile.bridge import ACTIVATIONS
from keras_mobile.quantization import tfmot_adapter

_tfmot = tfmot_adapter.tfmot()
_QuantizeConfig = _tfmot.quantization.keras.QuantizeConfig
_MovingAverageQuantizer = _tfmot.quantization.keras.quantizers.MovingAverageQuantizer
_LastValueQuantizer = _tfmot.quantization.keras.quantizers.LastValueQuantizer
_Quantizer = _tfmot.quantization.keras.quantizers.Quantizer
_FixedQuantizer = _tfmot.quantization.keras.quantizers.FixedQuantizer
_default_8bit = _tfmot.quantization.keras.default_8bit
_ConvQuantizeConfig = tfmot_adapter.conv_quantize_config_class()

# Layers computed in float inside the fake-quantized graph whose output alone is
# quantized: normalization, gating products, preprocessing, the rewritten
# activations' parts. WindowAttention has its own config.
OUTPUT_ONLY = ("LayerNorm", "PartialAdd", "Multiply", "Rescaling", "Normalization")
# Pure data movement: the output holds the input's (already quantized) values.
NO_OP = ("Identity", "ZeroPadding2D", "Cropping2D", "Flatten", "Reshape", "Permute", "Dropout")
# Resampling that keeps every output within its inputs' range (bilinear: a convex
# combination; nearest: a copy): TFLite's int8 RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR
# keep the input's scale and zero point, so the output is not quantized again (tfmot's
# registry quantizes UpSampling2D's output with a range of its own, which the converter
# then has to requantize: its own TODO about bilinear errors).
RESAMPLING = ("UpSampling2D", "Resizing")
RESAMPLING_INTERPOLATIONS = ("bilinear", "nearest")
# keras_mobile's activations (the registry's QuantizeAwareActivation does not know them).
CUSTOM_ACTIVATIONS = tuple(fn.__name__ for fn in ACTIVATIONS)


class QuantizeOutputOnly(_QuantizeConfig):
    """Quantize the layer's output only (8 bits, asymmetric, per tensor, moving
    average range); weights and the layer's internals stay float in training and
    are calibrated on representative data by the TFLite converter."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [_MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                        narrow_range=False)]

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class QuantizeNothing(QuantizeOutputOnly):
    """Quantize nothing: the layer only moves already quantized values."""

    def get_output_quantizers(self, layer):
        return []


class NamedMovingAverageQuantizer(_MovingAverageQuantizer):
    """tfmot's 8-bit asymmetric per-tensor activation quantizer whose range
    variables carry the quantized tensor's name (``<tensor>_post_activation_min``),
    so that several of them in one layer do not collide."""

    def __init__(self, tensor: str):
        super().__init__(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)
        self.tensor = tensor

    def build(self, tensor_shape, name, layer):
        return super().build(tensor_shape, f"{self.tensor}_{name}", layer)

    def get_config(self):
        return {"tensor": self.tensor}


class SymmetricQuantizer(_Quantizer):
    """8 bits per tensor with zero point 0: the range is ``[-128 s, 127 s]``,
    ``s = m / 127``, with ``m`` a moving average of ``max |x|`` learned in
    training (decay 0.999, no debiasing, from 6.0: as tfmot's activation
    ranges). XNNPACK runs an int8 BATCH_MATMUL only when its right operand
    has zero point 0; otherwise it falls to TFLite's reference kernel."""

    observer = None  # a calibration.RangeObserver while calibrating

    def __init__(self, tensor: str):
        self.tensor = tensor

    def build(self, tensor_shape, name, layer):
        import tf_keras  # noqa: PLC0415

        bound = layer.add_weight(f"{self.tensor}_{name}_max", trainable=False,
                                 initializer=tf_keras.initializers.Constant(6.0))
        return {"max_var": bound}

    def __call__(self, inputs, training, weights, **kwargs):
        import tensorflow as tf  # noqa: PLC0415

        bound = weights["max_var"]
        if self.observer is not None:
            return self.observer.observe_absolute(inputs, bound)
        if training:
            bound = bound.assign(0.999 * bound + 0.001 * tf.reduce_max(tf.abs(inputs)))
        return tf.quantization.fake_quant_with_min_max_vars(
            inputs, -bound * (128 / 127), bound, num_bits=8)

    def get_config(self):
        return {"tensor": self.tensor}


class WindowAttentionQuantizeConfig(QuantizeOutputOnly):
    """The attention's output, and inside it each tensor an int8 TFLite graph
    quantizes (``WindowAttention.QUANTIZED``), fake-quantized as TFLite does:
    the matmuls' right operands (keys, values) symmetric, so that XNNPACK runs
    both matmuls; the softmax output on its fixed grid; queries and logits
    with learned asymmetric ranges."""

    @staticmethod
    def _quantizers() -> dict:
        return {"query": NamedMovingAverageQuantizer("query"), "key": SymmetricQuantizer("key"),
                "logits": NamedMovingAverageQuantizer("logits"),
                # [0, 1) in steps of 1/256: the output grid TFLite's int8 SOFTMAX requires.
                "probabilities": _FixedQuantizer(8, 0.0, 255 / 256, narrow_range=False),
                "value": SymmetricQuantizer("value")}

    def get_activations_and_quantizers(self, layer):
        import tf_keras  # noqa: PLC0415

        quantizers = self._quantizers()
        # tfmot wraps each in a QuantizeAwareActivation, which quantizes after 'linear'.
        return [(tf_keras.activations.linear, quantizers[name]) for name in layer.QUANTIZED]

    def set_quantize_activations(self, layer, quantize_activations):
        layer.fake_quant.update(zip(layer.QUANTIZED, quantize_activations, strict=True))


class DepthwiseKernelQuantizer(_LastValueQuantizer):
    """Per-channel 8-bit weights for a depthwise kernel ``(kh, kw, C, M)``, as
    TFLite quantizes it (per output channel ``c * M + m``).

    tfmot's conv weight quantizer is per *last* axis, which for a depthwise
    kernel is the multiplier ``M = 1``: one range for the whole kernel
    (tensorflow/model-optimization#808). TFLite then re-quantizes the folded
    kernel per channel, so the int8 model rounds other weights than the QAT
    model trained with (a tiny MobileNetV2: int8 vs QAT cosine 0.45).
    """

    def __init__(self):
        super().__init__(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)

    @staticmethod
    def _channels(shape):
        return shape[:2] + [1, shape[2] * shape[3]]  # 4-D: tfmot's per-channel ops need it

    def build(self, tensor_shape, name, layer):
        return super().build(self._channels(list(tensor_shape)), name, layer)

    def __call__(self, inputs, training, weights, **kwargs):
        import tensorflow as tf  # noqa: PLC0415

        channels = tf.reshape(inputs, self._channels(inputs.shape.as_list()))
        return tf.reshape(super().__call__(channels, training, weights, **kwargs), inputs.shape)

    def get_config(self):
        return {}


class DepthwiseConvQuantizeConfig(_ConvQuantizeConfig):
    """tfmot's DepthwiseConv2D config with :class:`DepthwiseKernelQuantizer`."""

    def __init__(self, weight_attrs=("depthwise_kernel",), activation_attrs=("activation",),
                 quantize_output=False):
        super().__init__(list(weight_attrs), list(activation_attrs), quantize_output)
        self.weight_quantizer = DepthwiseKernelQuantizer()


def quantize_registry():
    """tfmot's default 8-bit registry, with per-channel depthwise kernels."""
    import tf_keras  # noqa: PLC0415

    chosen = _default_8bit.Default8BitQuantizeRegistry()
    tfmot_adapter.set_layer_config(chosen, tf_keras.layers.DepthwiseConv2D,
                                   DepthwiseConvQuantizeConfig())
    return chosen


class QuantizeScheme(_default_8bit.Default8BitQuantizeScheme):
    """tfmot's default 8-bit scheme (layout transforms included) with
    :func:`quantize_registry`."""

    def get_quantize_registry(self):
        return quantize_registry()


def config_for(layer, registry, inbound: tuple = ()):
    """The QuantizeConfig of a tf_keras ``layer`` whose inputs come from the
    ``inbound`` layers: None (tfmot's registry and layout transforms decide; a
    BatchNormalization after a convolution stays there so Conv+BN folding
    happens), an :class:`QuantizeOutputOnly` or a :class:`QuantizeNothing`.

    Raises:
        ValueError: neither the registry nor keras_mobile knows the layer.
    """
    name = type(layer).__name__
    activation = getattr(layer, "activation", None)
    activation_name = getattr(activation, "__name__", None)
    if name == "Activation" and activation_name in CUSTOM_ACTIVATIONS and \
            activation.__module__.startswith("keras_mobile"):
        return QuantizeOutputOnly()
    if name in OUTPUT_ONLY:
        return QuantizeOutputOnly()
    if name == "WindowAttention":
        return WindowAttentionQuantizeConfig()
    if name == "BatchNormalization":
        # tfmot folds a BN into the convolution before it when the BN is that
        # convolution's only consumer; any other BN (EMO's block norm) is quantized here.
        foldable = ([type(x).__name__ for x in inbound] in (["Conv2D"], ["DepthwiseConv2D"])
                    and len(inbound[0].outbound_nodes) == 1)
        return None if foldable else QuantizeOutputOnly()
    if name in NO_OP:
        return QuantizeNothing()
    if name in RESAMPLING and getattr(layer, "interpolation", None) in RESAMPLING_INTERPOLATIONS:
        return QuantizeNothing()
    if registry.supports(layer):
        return None
    raise ValueError(
        f"Layer {layer.name!r} of type {name} cannot be quantized: tfmot's 8-bit registry "
        f"does not support it and keras_mobile has no QuantizeConfig for it. Supported "
        f"besides the registry: {', '.join((*OUTPUT_ONLY, 'WindowAttention', *NO_OP))}, "
        f"bilinear or nearest {' and '.join(RESAMPLING)}.")


def custom_objects() -> dict:
    """The QuantizeConfigs by name, for ``quantize_scope`` and model loading."""
    return {"QuantizeOutputOnly": QuantizeOutputOnly,
            "QuantizeNothing": QuantizeNothing,
            "DepthwiseConvQuantizeConfig": DepthwiseConvQuantizeConfig,
            "DepthwiseKernelQuantizer": DepthwiseKernelQuantizer,
            "WindowAttentionQuantizeConfig": WindowAttentionQuantizeConfig,
            "NamedMovingAverageQuantizer": NamedMovingAverageQuantizer,
            "SymmetricQuantizer": SymmetricQuantizer}
