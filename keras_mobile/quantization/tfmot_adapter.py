"""Every adaptation of tensorflow_model_optimization (tfmot) in keras_mobile.

This is the only module that imports tfmot's private paths
(``tensorflow_model_optimization.python...``), reaches into its private
attributes or patches it; the rest of keras_mobile uses tfmot's public API
through :func:`tfmot`. It was written for tfmot ``WRITTEN_FOR`` (0.7.3, what
pip resolves beside mediapipe 1.2.2: see setup.cfg), and
``tests/test_quantization.py`` fails on any other release, so that a new tfmot
breaks this one module, loudly. The adaptations:

1. :func:`tfmot`: ``TF_USE_LEGACY_KERAS=1`` before the import (tfmot < 0.8
   uses ``tf.keras``, which must resolve to tf_keras, not Keras 3).
2. ``from_config`` added to ``NoOpActivation`` and to the QuantizeConfigs
   tfmot's layout transforms insert (tf_keras clones and loads them with it).
3. :func:`conv_quantize_config_class`: ``Default8BitConvQuantizeConfig``
   (private module), subclassed for per-channel depthwise kernels.
4. :func:`set_layer_config`: a registry's private ``_layer_quantize_map``.
5. :func:`observing_range_quantizers`: ``quant_ops``' range quantizers swapped
   for an observer while calibrating (tfmot has no calibration hook).
"""

from __future__ import annotations

import contextlib
import functools
import os

WRITTEN_FOR = "0.7.3"  # the tfmot release every adaptation below was checked against


@functools.cache
def tfmot():
    """Import tensorflow_model_optimization so that it runs on tf_keras, patched
    (``from_config``, see the module docstring); returns the module.

    tfmot < 0.8 uses ``tf.keras``; like tfmot 0.8 this sets
    ``TF_USE_LEGACY_KERAS=1`` first so that ``tf.keras`` resolves to tf_keras.
    keras_mobile itself never uses ``tf.keras`` (only ``keras`` and ``tf_keras``).

    Raises:
        RuntimeError: ``tf.keras`` was already resolved to Keras 3 and the
            installed tfmot needs it to be tf_keras.
    """
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    try:
        import tensorflow_model_optimization as module  # noqa: PLC0415
    except AttributeError as error:  # tfmot < 0.8 on a Keras 3 tf.keras
        raise RuntimeError(
            "tensorflow_model_optimization could not be imported on tf_keras: tf.keras was "
            "already used as Keras 3 in this process. Import keras_mobile.quantization (or "
            "set TF_USE_LEGACY_KERAS=1) before anything touches tf.keras, or install "
            f"tensorflow-model-optimization>=0.8. ({error})") from error
    _patch_from_config()
    return module


def _patch_from_config():
    """tfmot 0.7.3 has no ``from_config`` on ``NoOpActivation`` and on the
    QuantizeConfigs its layout transforms insert (``NoOpQuantizeConfig``,
    ``Default8BitOutputQuantizeConfig``, their n-bit twins), which tf_keras 2.21
    needs to clone quantized layers and to load a saved QAT model."""
    import inspect  # noqa: PLC0415

    from tensorflow_model_optimization.python.core.quantization.keras import (  # noqa: PLC0415
        quantize_aware_activation,
        quantize_config,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: PLC0415
        default_8bit_quantize_configs,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.experimental.default_n_bit import (  # noqa: E501, PLC0415
        default_n_bit_quantize_configs,
    )

    classes = [quantize_aware_activation.NoOpActivation]
    for module in (default_8bit_quantize_configs, default_n_bit_quantize_configs):
        classes += [c for c in vars(module).values()
                    if inspect.isclass(c) and issubclass(c, quantize_config.QuantizeConfig)]
    for cls in classes:
        if not hasattr(cls, "from_config"):
            cls.from_config = classmethod(lambda cls, config: cls(**config))


def conv_quantize_config_class():
    """tfmot's ``Default8BitConvQuantizeConfig`` (the default 8-bit registry's
    config of Conv2D/DepthwiseConv2D: weights per channel, activation after)."""
    tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: PLC0415
        default_8bit_quantize_registry,
    )

    return default_8bit_quantize_registry.Default8BitConvQuantizeConfig


def set_layer_config(registry, layer_class, config) -> None:
    """Make a ``Default8BitQuantizeRegistry`` quantize ``layer_class`` with
    ``config`` (tfmot has no public way to replace one layer's entry)."""
    registry._layer_quantize_map[layer_class] = config  # noqa: SLF001


@contextlib.contextmanager
def observing_range_quantizers(observe):
    """Inside the block, tfmot's range quantizers pass each tensor through
    unchanged and report it instead of fake-quantizing it:

    * activations (``MovingAvgQuantize``): ``observe(inputs, min_var, max_var,
      per_channel=..., num_bits=..., narrow_range=..., symmetric=...)``;
    * the input (``AllValuesQuantize``): the same with ``bounded=False`` (tfmot
      starts its range at [0, 0], not at [-6, 6]);
    * weights (``LastValueQuantize``): their ranges are set from the weights,
      as a training step sets them, and the float weights go on.

    tfmot's quantizers look their ``quant_ops`` function up at call time, so
    the swap reaches models built before the block; trace inside it.
    """
    tfmot()
    import tensorflow as tf  # noqa: PLC0415
    from tensorflow_model_optimization.python.core.quantization.keras import (  # noqa: PLC0415
        quant_ops,
    )

    def moving_average(inputs, min_var, max_var, per_channel=False, ema_decay=None,
                       name_prefix=None, is_training=None, **kwargs):
        return observe(inputs, min_var, max_var, per_channel=per_channel, **kwargs)

    def all_values(inputs, min_var, max_var, name_prefix=None, is_training=None, **kwargs):
        return observe(inputs, min_var, max_var, bounded=False, **kwargs)

    def last_value(inputs, min_var, max_var, is_training=None, **kwargs):
        saved["LastValueQuantize"](inputs, min_var, max_var, is_training=True, **kwargs)
        # A tensor, not the variable: tfmot's wrapper sets the result as the layer's
        # kernel, and a variable there would be tracked (saved) a second time.
        return tf.identity(inputs)

    patches = {"MovingAvgQuantize": moving_average, "AllValuesQuantize": all_values,
               "LastValueQuantize": last_value}
    saved = {name: getattr(quant_ops, name) for name in patches}
    for name, function in patches.items():
        setattr(quant_ops, name, function)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(quant_ops, name, function)
