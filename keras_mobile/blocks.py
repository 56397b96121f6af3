"""The block vocabulary every family is built from.

Each block is a function ``x -> x`` that creates standard Keras layers named
``<scope>_<part>`` (see "Layer names" in docs/models.md). Arguments after
``x`` are keyword-only. Two padding conventions exist because the reference
implementations differ:

* ``"same"``: TensorFlow's, as in keras.applications (asymmetric for stride 2
  on even inputs: 0 before, 1 after).
* ``"symmetric"``: PyTorch's ``padding=k // 2`` on every side, as in the
  official EMO and MobileNeXt code; for stride 2 an explicit
  ``ZeroPadding2D`` named ``<scope>_pad`` precedes a ``"valid"`` convolution.
"""

from __future__ import annotations

from typing import NamedTuple

from keras import layers

from keras_mobile.layers import LayerNorm, PartialAdd, WindowAttention, window_grid


class BN(NamedTuple):
    """BatchNormalization settings (Keras momentum = 1 - PyTorch momentum)."""

    epsilon: float = 1e-3
    momentum: float = 0.99


class Attention(NamedTuple):
    """EMO's window attention settings (see :func:`irmb`)."""

    num_heads: int
    window_size: int = 7
    attn_pre: bool = True


class SE(NamedTuple):
    """Squeeze-excite settings: reduced width, its activation and the gate."""

    filters: int
    act: str = "relu"
    gate: str = "sigmoid"


def activation(x, kind: str | None, *, name: str):
    """Apply ``kind`` ("relu", "relu6", "silu", "gelu", "hard_swish",
    "hard_sigmoid", "sigmoid") as a named layer; ``None`` is the identity."""
    if kind is None:
        return x
    if kind == "relu":
        return layers.ReLU(name=name)(x)
    if kind == "relu6":
        return layers.ReLU(6.0, name=name)(x)
    return layers.Activation(kind, name=name)(x)


def conv_bn(
    x,
    filters: int | None,
    kernel_size: int = 1,
    *,
    strides: int = 1,
    dilation_rate: int = 1,
    depthwise: bool = False,
    depth_multiplier: int = 1,
    use_bias: bool = False,
    bn: BN | None = BN(),
    act: str | None = None,
    padding: str = "same",
    name: str,
):
    """Convolution (depthwise when ``depthwise``, with ``depth_multiplier``; atrous with
    ``dilation_rate``) -> BatchNorm -> activation.

    Layers: ``{name}_pad`` (symmetric stride-2 only), ``{name}_conv``,
    ``{name}_bn`` (unless ``bn`` is None), ``{name}_act`` (unless ``act`` is None).
    """
    conv_padding = "same"
    if padding == "symmetric" and strides > 1:
        x = layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        conv_padding = "valid"
    if depthwise:
        x = layers.DepthwiseConv2D(kernel_size, strides=strides, padding=conv_padding,
                                   depth_multiplier=depth_multiplier, use_bias=use_bias,
                                   dilation_rate=dilation_rate, name=f"{name}_conv")(x)
    else:
        x = layers.Conv2D(filters, kernel_size, strides=strides, padding=conv_padding,
                          use_bias=use_bias, dilation_rate=dilation_rate,
                          name=f"{name}_conv")(x)
    if bn is not None:
        x = layers.BatchNormalization(epsilon=bn.epsilon, momentum=bn.momentum,
                                      name=f"{name}_bn")(x)
    return activation(x, act, name=f"{name}_act")


def squeeze_excite(x, se: SE, *, name: str):
    """Global average -> 1x1 reduce (+act) -> 1x1 expand -> gate -> multiply.

    Layers: ``{name}_squeeze``, ``{name}_reduce``, ``{name}_act``,
    ``{name}_expand``, ``{name}_gate``, ``{name}_excite``.
    """
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Conv2D(se.filters, 1, name=f"{name}_reduce")(s)
    s = activation(s, se.act, name=f"{name}_act")
    s = layers.Conv2D(channels, 1, name=f"{name}_expand")(s)
    s = activation(s, se.gate, name=f"{name}_gate")
    return layers.Multiply(name=f"{name}_excite")([x, s])


def residual(shortcut, x, *, drop_rate: float = 0.0, identity_channels: int | None = None,
             name: str):
    """``shortcut + drop_path(x)``; with ``identity_channels`` only the first
    that many channels of the shortcut are added (MobileNeXt's identity
    tensor multiplier). Layers: ``{name}_drop_path`` (if drop_rate > 0), ``{name}_add``."""
    if drop_rate > 0:
        x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop_path")(x)
    if identity_channels is not None and identity_channels < x.shape[-1]:
        return PartialAdd(identity_channels, name=f"{name}_add")([shortcut, x])
    return layers.Add(name=f"{name}_add")([shortcut, x])


def inverted_residual(
    x,
    *,
    filters: int,
    expanded: int | None,
    kernel_size: int = 3,
    strides: int = 1,
    act: str = "relu6",
    se: SE | None = None,
    bn: BN = BN(),
    padding: str = "same",
    skip: bool = True,
    drop_rate: float = 0.0,
    name: str,
):
    """MobileNetV2's inverted residual (with MobileNetV3's / EfficientNet's SE).

    ``expanded`` is the expansion width (None: no expansion conv). The skip is
    used when ``skip`` and the block keeps its shape.
    Parts: ``expand_*``, ``dw_*``, ``se_*``, ``project_*``, ``drop_path``, ``add``.
    """
    shortcut = x
    if expanded is not None:
        x = conv_bn(x, expanded, 1, bn=bn, act=act, name=f"{name}_expand")
    x = conv_bn(x, None, kernel_size, strides=strides, depthwise=True, bn=bn, act=act,
                padding=padding, name=f"{name}_dw")
    if se is not None:
        x = squeeze_excite(x, se, name=f"{name}_se")
    x = conv_bn(x, filters, 1, bn=bn, name=f"{name}_project")
    if skip and strides == 1 and shortcut.shape[-1] == filters:
        x = residual(shortcut, x, drop_rate=drop_rate, name=name)
    return x


def sandglass(
    x,
    *,
    filters: int,
    reduced: int,
    strides: int = 1,
    first_dw: bool = True,
    last_dw: bool = True,
    skip: bool = False,
    identity_channels: int | None = None,
    kernel_size: int = 3,
    act: str = "relu6",
    se: SE | None = None,
    bn: BN = BN(1e-5, 0.9),
    padding: str = "symmetric",
    drop_rate: float = 0.0,
    name: str,
):
    """MobileNeXt's sandglass block (Zhou et al., ECCV 2020), as the official code runs it.

    dw (+act) -> 1x1 reduce (linear) -> 1x1 expand (+act) -> dw with the
    stride (linear) [-> SE] [-> identity add]. ``first_dw`` / ``last_dw``
    drop the depthwise convs of transition blocks (specs/mobilenext.md §1.3).
    Parts: ``dw1_*``, ``reduce_*``, ``expand_*``, ``dw2_*``, ``se_*``, ``add``.
    """
    shortcut = x
    if first_dw:
        x = conv_bn(x, None, kernel_size, depthwise=True, bn=bn, act=act, padding=padding,
                    name=f"{name}_dw1")
    x = conv_bn(x, reduced, 1, bn=bn, name=f"{name}_reduce")
    x = conv_bn(x, filters, 1, bn=bn, act=act, name=f"{name}_expand")
    if last_dw:
        x = conv_bn(x, None, kernel_size, strides=strides, depthwise=True, bn=bn,
                    padding=padding, name=f"{name}_dw2")
    if se is not None:
        x = squeeze_excite(x, se, name=f"{name}_se")
    if skip:
        x = residual(shortcut, x, drop_rate=drop_rate, identity_channels=identity_channels,
                     name=name)
    return x


def normalization(x, kind: str | None, *, bn: BN = BN(), epsilon: float = 1e-6, name: str):
    """``"bn"`` (BatchNormalization), ``"ln"`` (LayerNormalization over channels,
    per pixel, as :class:`~keras_mobile.layers.LayerNorm`) or None."""
    if kind == "bn":
        return layers.BatchNormalization(epsilon=bn.epsilon, momentum=bn.momentum, name=name)(x)
    if kind == "ln":
        return LayerNorm(epsilon=epsilon, name=name)(x)
    return x


def window_attention(x, *, expanded: int, attention: Attention, act: str, name: str):
    """EMO's EW-MHSA followed by the expansion ``v`` (or preceded, ``attn_pre=False``).

    Zero-pads right/bottom to a multiple of the window size (after the norm, so
    padded tokens are zeros), attends within interleaved windows, crops back.
    Parts: ``attn_pad``, ``attn_qk``, ``attn``, ``attn_crop``, ``expand_*``.
    """
    height, width, channels = x.shape[1:]
    n1, n2 = window_grid(height, width, attention.window_size)
    ws = attention.window_size
    pad = ((0, n1 * ws - height), (0, n2 * ws - width)) if ws > 0 else ((0, 0), (0, 0))
    padded = pad != ((0, 0), (0, 0))
    if padded:
        x = layers.ZeroPadding2D(pad, name=f"{name}_attn_pad")(x)
    qk = layers.Conv2D(2 * channels, 1, use_bias=True, name=f"{name}_attn_qk")(x)
    value = x
    if not attention.attn_pre:
        value = conv_bn(x, expanded, 1, use_bias=True, bn=None, act=act, name=f"{name}_expand")
    y = WindowAttention(attention.num_heads, ws, name=f"{name}_attn")([qk, value])
    if padded:
        y = layers.Cropping2D(pad, name=f"{name}_attn_crop")(y)
    if attention.attn_pre:
        y = conv_bn(y, expanded, 1, use_bias=True, bn=None, act=act, name=f"{name}_expand")
    return y


def irmb(
    x,
    *,
    filters: int,
    expanded: int | None,
    kernel_size: int = 3,
    strides: int = 1,
    norm: str | None = "bn",
    act: str = "silu",
    attention: Attention | None = None,
    se: SE | None = None,
    skip: bool = True,
    drop_rate: float = 0.0,
    bn: BN = BN(1e-6, 0.9),
    name: str,
):
    """EMO's inverted residual mobile block (iRMB; Zhang et al., ICCV 2023).

    norm -> [window attention] -> 1x1 expand ``v`` (+bias, act) -> depthwise
    (BN, SiLU, inner residual when ``skip``) [-> SE] -> 1x1 project (no bias)
    -> outer residual when ``skip``. ``expanded=None``: no ``v`` conv.
    Parts: ``norm``, ``attn_*``, ``expand_*``, ``dw_*``, ``dw_add``, ``se_*``,
    ``project_conv``, ``drop_path``, ``add``.
    """
    shortcut = x
    x = normalization(x, norm, bn=bn, name=f"{name}_norm")
    if attention is not None:
        x = window_attention(x, expanded=expanded, attention=attention, act=act, name=name)
    elif expanded is not None:
        x = conv_bn(x, expanded, 1, use_bias=True, bn=None, act=act, name=f"{name}_expand")
    local = conv_bn(x, None, kernel_size, strides=strides, depthwise=True, bn=bn, act="silu",
                    padding="symmetric", name=f"{name}_dw")
    if se is not None:
        local = squeeze_excite(local, se, name=f"{name}_se")
    x = layers.Add(name=f"{name}_dw_add")([x, local]) if skip else local
    x = conv_bn(x, filters, 1, bn=None, name=f"{name}_project")
    if skip:
        x = residual(shortcut, x, drop_rate=drop_rate, name=name)
    return x
