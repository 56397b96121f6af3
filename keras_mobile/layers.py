"""The few layers that standard Keras layers cannot express.

They hold no weights of their own (LayerNorm's are those of Keras'
LayerNormalization) and are written with TensorFlow ops, laid out so that every
tensor in the converted TFLite graph has rank <= 4.

Each layer's logic is a mixin (``_PartialAddLogic``, ...) combined once with a
Keras 3 base class here and once with a tf_keras base class in
:func:`tf_keras_layers`, so the Keras 3 model and its tf_keras twin (used for
quantization-aware training) run the same code.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf


class _PartialAddLogic:
    """``[shortcut, x] -> x`` with ``shortcut[..., :channels]`` added to the first
    ``channels`` channels of ``x`` (MobileNeXt's identity tensor multiplier)."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)

    def call(self, inputs):
        shortcut, x = inputs
        k = self.channels
        return tf.concat([x[..., :k] + shortcut[..., :k], x[..., k:]], axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


class _LayerNormLogic:
    """LayerNormalization over the last axis computed as
    ``(x - mean) * rsqrt(var + eps) * gamma + beta``.

    Same weights and (up to rounding) outputs as Keras' layer, whose graph
    lowers with a NEG that stays float in a full-int8 TFLite model; this one
    lowers to SUB/MUL/MEAN/RSQRT, all of which quantize. float16/bfloat16
    inputs are normalized in float32.
    """

    def call(self, inputs):
        if self.axis not in (-1, [-1], [len(inputs.shape) - 1], len(inputs.shape) - 1):
            raise ValueError(f"LayerNorm normalizes the last axis only. Received: axis={self.axis}")
        x = tf.cast(inputs, tf.float32)
        centered = x - tf.reduce_mean(x, axis=-1, keepdims=True)
        variance = tf.reduce_mean(centered * centered, axis=-1, keepdims=True)
        y = centered * tf.math.rsqrt(variance + self.epsilon)
        if self.scale:
            y = y * tf.cast(self.gamma, tf.float32)
        if self.center:
            y = y + tf.cast(self.beta, tf.float32)
        return tf.cast(y, inputs.dtype)


@keras.saving.register_keras_serializable(package="keras_mobile")
class PartialAdd(_PartialAddLogic, keras.layers.Layer):
    __doc__ = _PartialAddLogic.__doc__


@keras.saving.register_keras_serializable(package="keras_mobile")
class LayerNorm(_LayerNormLogic, keras.layers.LayerNormalization):
    __doc__ = _LayerNormLogic.__doc__


def window_partition(x, grid: tuple[int, int]):
    """(B, H, W, C) -> (B * N1 * N2, wh * ww, C) for an N1 x N2 grid of
    *interleaved* windows: pixel (r, c) goes to window (r mod N1, c mod N2).

    Done as two rank-4 reshape/transpose pairs; the token order inside a window
    is (column, row), which attention does not depend on. A 1 x 1 grid is a
    plain reshape.
    """
    n1, n2 = grid
    _, height, width, channels = x.shape
    if grid == (1, 1):
        return tf.reshape(x, (-1, height * width, channels))
    wh, ww = height // n1, width // n2
    x = tf.reshape(x, (-1, wh, n1 * ww, n2 * channels))
    x = tf.transpose(x, (0, 2, 1, 3))  # (B, N1*ww, wh, N2*C)
    x = tf.reshape(x, (-1, ww * wh, n2, channels))
    x = tf.transpose(x, (0, 2, 1, 3))  # (B*N1, N2, ww*wh, C)
    return tf.reshape(x, (-1, ww * wh, channels))


def window_reverse(x, grid: tuple[int, int], size: tuple[int, int]):
    """The exact inverse of :func:`window_partition`."""
    n1, n2 = grid
    height, width = size
    channels = x.shape[-1]
    if grid == (1, 1):
        return tf.reshape(x, (-1, height, width, channels))
    wh, ww = height // n1, width // n2
    x = tf.reshape(x, (-1, n2, ww * wh, channels))
    x = tf.transpose(x, (0, 2, 1, 3))  # (B*N1, ww*wh, N2, C)
    x = tf.reshape(x, (-1, n1 * ww, wh, n2 * channels))
    x = tf.transpose(x, (0, 2, 1, 3))  # (B, wh, N1*ww, N2*C)
    return tf.reshape(x, (-1, height, width, channels))


def window_grid(height: int, width: int, window_size: int) -> tuple[int, int]:
    """Number of windows along H and W once the map is padded to a multiple of
    ``window_size`` (``window_size <= 0``: one window over the whole map)."""
    if window_size <= 0:
        return 1, 1
    return -(-height // window_size), -(-width // window_size)


class _WindowAttentionLogic:
    """EMO's expanded window multi-head self-attention (EW-MHSA), without weights.

    Inputs ``[qk, value]``: ``qk`` (B, H, W, 2C) holds queries in channels
    ``[0, C)`` and keys in ``[C, 2C)``, head h owning a contiguous slice of
    ``C / num_heads``; ``value`` (B, H, W, Cv) is split into ``num_heads`` heads
    the same way. H and W must be multiples of the window size (pad first).
    Softmax runs over keys, scaled by ``head_dim ** -0.5``, with no mask and no
    positional bias, as in the official code.
    """

    # The tensors an int8 graph quantizes inside the attention, in call order.
    # Quantization-aware training sets ``fake_quant`` (name -> callable,
    # keras_mobile.quantization.configs.WindowAttentionQuantizeConfig); else identity.
    QUANTIZED = ("query", "key", "logits", "probabilities", "value")

    def __init__(self, num_heads: int, window_size: int, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.window_size = int(window_size)
        self.fake_quant = {}

    def _quantized(self, name: str, x):
        quantize = self.fake_quant.get(name)
        return x if quantize is None else quantize(x)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        return window_grid(height, width, self.window_size)

    @staticmethod
    def _heads(x, heads: int):
        """(Bw, T, heads*d) -> (Bw, heads, T, d)."""
        tokens, channels = x.shape[1], x.shape[2]
        x = tf.reshape(x, (-1, tokens, heads, channels // heads))
        return tf.transpose(x, (0, 2, 1, 3))

    def call(self, inputs):
        qk, value = inputs
        height, width = qk.shape[1], qk.shape[2]
        grid = self.grid(height, width)
        qk = self._heads(window_partition(qk, grid), 2 * self.num_heads)  # (Bw, 2h, T, d)
        q, k = qk[:, : self.num_heads], qk[:, self.num_heads :]
        q = q * float(q.shape[-1]) ** -0.5  # scaling q costs T/(T*T) of scaling the logits
        q, k = self._quantized("query", q), self._quantized("key", k)
        logits = self._quantized("logits", tf.matmul(q, k, transpose_b=True))
        # Mixed precision: the softmax runs in float32 (no op is added otherwise).
        wide = tf.float32 if logits.dtype in (tf.float16, tf.bfloat16) else logits.dtype
        attn = tf.cast(tf.nn.softmax(tf.cast(logits, wide), axis=-1), logits.dtype)
        attn = self._quantized("probabilities", attn)
        v = self._quantized("value", self._heads(window_partition(value, grid), self.num_heads))
        y = tf.transpose(tf.matmul(attn, v), (0, 2, 1, 3))  # (Bw, T, h, dv)
        y = tf.reshape(y, (-1, y.shape[1], value.shape[-1]))
        return window_reverse(y, grid, (height, width))

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def macs(self, input_shapes) -> int:
        """Multiply-adds of Q.K^T and A.V per image (fvcore's matmul count)."""
        (_, height, width, qk_channels), (_, _, _, v_channels) = input_shapes
        n1, n2 = self.grid(height, width)
        tokens = (height // n1) * (width // n2)
        return n1 * n2 * tokens * tokens * (qk_channels // 2 + v_channels)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "window_size": self.window_size}


@keras.saving.register_keras_serializable(package="keras_mobile")
class WindowAttention(_WindowAttentionLogic, keras.layers.Layer):
    __doc__ = _WindowAttentionLogic.__doc__


# name -> (logic, name of the base class in ``<keras module>.layers``)
_LOGIC = {
    "PartialAdd": (_PartialAddLogic, "Layer"),
    "LayerNorm": (_LayerNormLogic, "LayerNormalization"),
    "WindowAttention": (_WindowAttentionLogic, "Layer"),
}


@functools.cache
def tf_keras_layers() -> dict[str, type]:
    """The tf_keras twins of this module's layers, by class name: the same logic
    on tf_keras base classes, registered as ``keras_mobile>Name`` in tf_keras.
    Imports tf_keras on first call (never ``tf.keras``)."""
    import tf_keras  # noqa: PLC0415  (only quantization needs it)

    register = tf_keras.saving.register_keras_serializable(package="keras_mobile")
    return {name: register(type(name, (logic, getattr(tf_keras.layers, base)),
                                {"__doc__": logic.__doc__, "__module__": __name__}))
            for name, (logic, base) in _LOGIC.items()}
