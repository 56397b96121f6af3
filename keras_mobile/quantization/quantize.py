"""``quantize_model``: any keras_mobile model -> a tf_keras quantization-aware model.

The Keras 3 model is translated to tf_keras (:func:`keras_mobile.bridge.to_tf_keras`,
weights copied exactly, hard-swish and GELU rewritten into XNNPACK-friendly
int8 ops), every layer is annotated with tfmot's default 8-bit registry or a
keras_mobile QuantizeConfig (:mod:`keras_mobile.quantization.configs`), and
``quantize_apply`` runs inside ``quantize_scope``.
"""

from __future__ import annotations

from keras_mobile.quantization.tfmot_adapter import tfmot


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
        representative_data: images (as for ``keras_mobile.tflite.convert``; see
            ``keras_mobile.data.samples.as_images``) to
            :func:`~keras_mobile.quantization.calibrate` the activation ranges
            on before fine-tuning. Without it they start at tfmot's [-6, 6]
            (the input's at [0, 0]), which a short fine-tune barely moves
            (moving average, decay 0.999).
        num_calibration_samples: how many of those images to calibrate on.

    Returns:
        A compiled-free ``tf_keras.Model`` with fake-quantization; fine-tune it
        (weights and, by a moving average, ranges are learned in training
        mode), then export with ``keras_mobile.export.export(qat, path,
        mode="qat_int8", representative_data=...)`` (or
        ``keras_mobile.tflite.convert(qat, path, mode="int8", ...)``).

    Raises:
        ValueError: ``model`` is not a Keras 3 functional model, or holds a
            layer that cannot be translated or quantized (the message names it).

    Example:
        >>> qat = keras_mobile.quantization.quantize_model(model, representative_data=images[:100])
        >>> qat.compile("adam", "sparse_categorical_crossentropy")
        >>> qat.fit(images, labels, epochs=1)
        >>> keras_mobile.export.export(qat, "m.tflite", mode="qat_int8",
        ...                            representative_data=images[:100])
    """
    from keras_mobile.bridge import check_functional, to_tf_keras  # noqa: PLC0415
    from keras_mobile.quantization import calibration  # noqa: PLC0415

    images = None
    if representative_data is not None:  # checked before any work
        check_functional(model)
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

    from keras_mobile.bridge import tf_keras_objects  # noqa: PLC0415
    from keras_mobile.quantization import configs  # noqa: PLC0415  (imports tfmot)

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
    from keras_mobile.bridge import tf_keras_objects  # noqa: PLC0415
    from keras_mobile.quantization import configs  # noqa: PLC0415

    return tfmot().quantization.keras.quantize_scope(
        {**tf_keras_objects(), **configs.custom_objects()})


def raw_pixel_input(graph) -> None:
    """Sets the range of tfmot's input quantizer (the ``QuantizeLayer`` on the image, whose
    all-values range calibration sets to the images' min/max, or [0, 0] without images)
    of a quantization-aware ``graph`` to [0, 255]: its exported uint8 input is then scale
    1, zero point 0, and a client's raw pixels (MediaPipe's) reach the model as they are.
    Training keeps it (an all-values range only widens, and pixels stay within it)."""
    import tf_keras  # noqa: PLC0415

    for layer in graph.layers:
        inbound = layer.inbound_nodes[0].inbound_layers if layer.inbound_nodes else None
        if type(layer).__name__ != "QuantizeLayer" or not isinstance(
                inbound, tf_keras.layers.InputLayer):
            continue
        for weight in layer.weights:
            name = weight.name.split(":")[0]
            if name.endswith("_min"):
                weight.assign(0.0)
            elif name.endswith("_max"):
                weight.assign(255.0)
