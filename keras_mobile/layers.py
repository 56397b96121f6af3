"""The few layers that standard Keras layers cannot express.

They hold no weights (weights live in standard Conv2D/BN/LN layers next to
them) and are written with TensorFlow ops, laid out so that every tensor in the
converted TFLite graph has rank <= 4.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_mobile")
class PartialAdd(keras.layers.Layer):
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


@keras.saving.register_keras_serializable(package="keras_mobile")
class LayerNorm(keras.layers.LayerNormalization):
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
        x = keras.ops.cast(inputs, "float32")
        centered = x - keras.ops.mean(x, axis=-1, keepdims=True)
        variance = keras.ops.mean(centered * centered, axis=-1, keepdims=True)
        y = centered * keras.ops.rsqrt(variance + self.epsilon)
        if self.scale:
            y = y * keras.ops.cast(self.gamma, "float32")
        if self.center:
            y = y + keras.ops.cast(self.beta, "float32")
        return keras.ops.cast(y, inputs.dtype)


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


@keras.saving.register_keras_serializable(package="keras_mobile")
class WindowAttention(keras.layers.Layer):
    """EMO's expanded window multi-head self-attention (EW-MHSA), without weights.

    Inputs ``[qk, value]``: ``qk`` (B, H, W, 2C) holds queries in channels
    ``[0, C)`` and keys in ``[C, 2C)``, head h owning a contiguous slice of
    ``C / num_heads``; ``value`` (B, H, W, Cv) is split into ``num_heads`` heads
    the same way. H and W must be multiples of the window size (pad first).
    Softmax runs over keys, scaled by ``head_dim ** -0.5``, with no mask and no
    positional bias, as in the official code.
    """

    def __init__(self, num_heads: int, window_size: int, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.window_size = int(window_size)

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
        attn = tf.nn.softmax(tf.matmul(q, k, transpose_b=True), axis=-1)
        v = self._heads(window_partition(value, grid), self.num_heads)
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
