"""``quantize_model``: any keras_mobile model -> a tf_keras quantization-aware model.

The Keras 3 model is translated to tf_keras (:func:`~keras_mobile.quantization.to_tf_keras`,
weights copied exactly, hard-swish and GELU rewritten into XNNPACK-friendly
int8 ops), every layer is annotated with tfmot's default 8-bit registry or a
keras_mobile QuantizeConfig (:mod:`keras_mobile.quantization.configs`), and
``quantize_apply`` runs inside ``quantize_scope``.
"""

from __future__ import annotations

import functools
import os


@functools.cache
def tfmot():
    """Import tensorflow_model_optimization so that it runs on tf_keras.

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
    needs to clone quantized layers and to load a saved QAT model. pip resolves
    0.7.3 beside mediapipe 1.2.2 (0.8.1 pins absl-py~=1.2, mediapipe absl-py~=2.3)."""
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


def quantize_model(model, *, logits: bool = False, representative_data=None,
                   num_calibration_samples: int = 100):
    """A quantization-aware (tfmot, 8-bit) tf_keras copy of a keras_mobile model.

    Args:
        model: a Keras 3 functional model built by keras_mobile, trained or not
            (its weights are copied exactly).
        logits: drop a softmax that ends the model, so the QAT model (and its
            int8 TFLite graph) outputs logits: LiteRT's XNNPACK delegate does not
            run int8 SOFTMAX, which otherwise leaves the classifier's softmax to
            the reference kernels (a second delegate partition). Train it with
            ``from_logits=True`` losses; argmax is unchanged.
        representative_data: images (as for ``keras_mobile.tflite.convert``) to
            :func:`~keras_mobile.quantization.calibrate` the activation ranges
            on before fine-tuning. Without it they start at tfmot's [-6, 6]
            (the input's at [0, 0]), which a short fine-tune barely moves
            (moving average, decay 0.999).
        num_calibration_samples: how many of those images to calibrate on.

    Returns:
        A compiled-free ``tf_keras.Model`` with fake-quantization; fine-tune it
        (weights and, by a moving average, ranges are learned in training
        mode), then convert with
        ``keras_mobile.tflite.convert(qat, path, mode="int8", representative_data=...)``.

    Raises:
        ValueError: ``model`` is not a Keras 3 functional model, or holds a
            layer that cannot be translated or quantized (the message names it).

    Example:
        >>> qat = keras_mobile.quantization.quantize_model(model, representative_data=images[:100])
        >>> qat.compile("adam", "sparse_categorical_crossentropy")
        >>> qat.fit(images, labels, epochs=1)
        >>> keras_mobile.tflite.convert(qat, "m.tflite", mode="int8",
        ...                             representative_data=images[:100])
    """
    from keras_mobile.quantization import calibration  # noqa: PLC0415
    from keras_mobile.quantization.bridge import _graph, to_tf_keras  # noqa: PLC0415

    images = None
    if representative_data is not None:  # checked before any work
        _graph(model)  # raises if ``model`` is not a Keras 3 functional model
        images = calibration.calibration_images(representative_data, num_calibration_samples,
                                              model.input_shape[1:])
    twin = to_tf_keras(model, for_quantization=True, logits=logits)  # checks the model first
    qat = quantize_tf_keras(twin)
    if images is not None:
        calibration.calibrate(qat, images, len(images))
    return qat


def quantize_tf_keras(twin):
    """Annotate a translated tf_keras model and apply tfmot's 8-bit scheme."""
    import tf_keras  # noqa: PLC0415

    from keras_mobile.quantization import configs  # noqa: PLC0415  (imports tfmot)
    from keras_mobile.quantization.bridge import tf_keras_objects  # noqa: PLC0415

    quantization = tfmot().quantization.keras
    scheme = configs.QuantizeScheme()
    registry = scheme.get_quantize_registry()
    chosen = {layer.name: configs.config_for(layer, registry, _inbound(layer))
              for layer in twin.layers
              if not isinstance(layer, tf_keras.layers.InputLayer)}  # raises first

    def annotate(layer):
        if layer.name not in chosen:
            return layer
        return quantization.quantize_annotate_layer(layer, quantize_config=chosen[layer.name])

    objects = {**tf_keras_objects(), **configs.custom_objects()}
    with quantization.quantize_scope(objects):
        annotated = tf_keras.models.clone_model(twin, clone_function=annotate)
        return quantization.quantize_apply(annotated, scheme=scheme)


def _inbound(layer) -> tuple:
    node = layer.inbound_nodes[0]
    inbound = node.inbound_layers
    return tuple(inbound) if isinstance(inbound, (list, tuple)) else (inbound,)


def quantize_scope():
    """``tfmot.quantization.keras.quantize_scope`` with keras_mobile's layers,
    activations and QuantizeConfigs, for loading a QAT model saved as HDF5:

        >>> qat.save("qat.h5")
        >>> with keras_mobile.quantization.quantize_scope():
        ...     qat = tf_keras.models.load_model("qat.h5")

    (The ``.keras`` format does not load with tfmot 0.7.3: its input
    QuantizeLayer creates its range variables twice. Training checkpoints,
    ``tf.train.Checkpoint``, restore into ``quantize_model(model)``.)
    """
    from keras_mobile.quantization import configs  # noqa: PLC0415
    from keras_mobile.quantization.bridge import tf_keras_objects  # noqa: PLC0415

    return tfmot().quantization.keras.quantize_scope(
        {**tf_keras_objects(), **configs.custom_objects()})
