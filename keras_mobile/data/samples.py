"""Sample images: real-looking synthetic ones for parity checks and int8
calibration, adapters from what users hold (arrays, ``tf.data``, generators,
image folders) to a float32 batch, a dataset split through the eval transform,
and BatchNorm statistics measured on images.

A data module: ``keras_mobile.tflite`` (conversion, parity) and
``keras_mobile.quantization`` (calibration) both read their images through it;
it imports neither.

Random uniform noise is a poor stand-in for photos: its statistics (no spatial
correlation, flat histogram) drive activations into ranges that real images
never reach, so quantization ranges and parity numbers measured on it mislead.
:func:`synthetic_images` draws smooth gradients, blobs, stripes and edges with
mild sensor noise instead.
"""

from __future__ import annotations

import itertools

import numpy as np


def synthetic_images(count: int, size, seed: int = 0) -> np.ndarray:
    """``count`` float32 RGB images in [0, 255] of ``size`` (H, W) or (H, W, 3),
    deterministic for a ``seed``: a colour gradient background with ellipses,
    stripes and rectangles of random colour, position and scale, plus noise."""
    height, width = int(size[0]), int(size[1])
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    rows, cols = rows / max(height - 1, 1), cols / max(width - 1, 1)
    images = np.empty((count, height, width, 3), np.float32)
    for i in range(count):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        angle = rng.uniform(0, np.pi)
        t = (np.cos(angle) * cols + np.sin(angle) * rows)[..., None]
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        img = c0 * (1 - t) + c1 * t
        for _ in range(rng.integers(2, 6)):
            colour = rng.uniform(0, 255, 3)
            cy, cx = rng.uniform(0, 1, 2)
            ry, rx = rng.uniform(0.05, 0.4, 2)
            kind = rng.integers(3)
            if kind == 0:
                mask = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
            elif kind == 1:
                mask = (np.abs(rows - cy) <= ry) & (np.abs(cols - cx) <= rx)
            else:
                period = rng.uniform(0.05, 0.25)
                mask = np.sin((rows * np.cos(angle) - cols * np.sin(angle)) / period * 6) > 0
                mask &= (np.abs(rows - cy) <= 2 * ry) & (np.abs(cols - cx) <= 2 * rx)
            img = np.where(mask[..., None], colour, img)
        img = img + rng.normal(0, 4, img.shape)
        images[i] = np.clip(img, 0, 255)
    return images


def check_count(name: str, value) -> None:
    """A sample count (``num_calibration_samples``, ...) must be a positive int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}")


def as_images(data, count: int, shape) -> np.ndarray:
    """The first ``count`` images of ``data`` as a float32 (N, H, W, C) array.

    ``data``: an array (N, H, W, C) or one image, a ``tf.data.Dataset`` or any
    iterable yielding images, ``(images, labels)`` pairs or dicts with an
    ``"image"`` key, batched or not, or a callable returning such an iterable.
    Images must already have the model's input size.
    """
    if callable(data) and not hasattr(data, "__iter__"):
        data = data()
    if isinstance(data, np.ndarray):
        images = data[None] if data.ndim == 3 else data
    else:
        parts, seen = [], 0
        for item in itertools.islice(iter(data), count):
            if isinstance(item, dict):
                item = item["image"]
            elif isinstance(item, (tuple, list)):
                item = item[0]
            item = np.asarray(item, np.float32)
            item = item[None] if item.ndim == 3 else item
            parts.append(item)
            seen += len(item)
            if seen >= count:
                break
        if not parts:
            raise ValueError("representative_data yielded no images.")
        images = np.concatenate(parts)
    images = np.asarray(images[:count], np.float32)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(shape):
        raise ValueError(f"representative_data must hold images of the model's input shape "
                         f"{tuple(shape)}. Received images of shape {tuple(images.shape[1:])}.")
    return images


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def load_images(source: str, shape, count: int) -> np.ndarray:
    """Up to ``count`` images from a ``.npy`` array (N, H, W, C) or a folder
    (searched recursively, sorted), resized (shorter side) and centre-cropped
    to ``shape``; float32 in [0, 255]."""
    import os

    if source.endswith(".npy"):
        return as_images(np.load(source), count, shape)
    if not os.path.isdir(source):
        raise ValueError(f"Calibration images must be a folder or a .npy file. "
                         f"Received: {source!r}")
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(source)
                   for name in names if name.lower().endswith(IMAGE_SUFFIXES))[:count]
    if not files:
        raise ValueError(f"No images ({', '.join(IMAGE_SUFFIXES)}) under {source!r}.")
    import tensorflow as tf

    height, width = shape[0], shape[1]
    images = []
    for file in files:
        image = tf.io.decode_image(tf.io.read_file(file), channels=3, expand_animations=False)
        scale = max(height / image.shape[0], width / image.shape[1])
        resized = tf.image.resize(tf.cast(image, tf.float32),
                                  (round(image.shape[0] * scale), round(image.shape[1] * scale)))
        images.append(tf.image.resize_with_crop_or_pad(resized, height, width).numpy())
    return np.clip(np.stack(images), 0, 255).astype(np.float32)


def split_images(info, split: str, image_size: int, count: int | None = None):
    """(images float32 [0, 255], labels int) of a dataset split through the eval
    transform (``keras_mobile.data.input_pipeline(training=False)``), the first
    ``count`` of them, or all; ``info`` is a ``keras_mobile.data.DatasetInfo``."""
    from keras_mobile.data.datasets import input_pipeline  # noqa: PLC0415

    total = info.num_examples(split)
    ds = input_pipeline(info, split, training=False, image_size=image_size,
                        global_batch_size=min(256, total))
    images, labels, weights = [], [], []
    for x, y, w in ds:
        images.append(x.numpy())
        labels.append(y.numpy().argmax(-1))
        weights.append(w.numpy())
        if count and sum(len(b) for b in images) >= count:
            break
    keep = np.concatenate(weights) > 0
    images, labels = np.concatenate(images)[keep], np.concatenate(labels)[keep]
    return (images[:count], labels[:count]) if count else (images, labels)


def recalibrate_batchnorm(model, images) -> None:
    """Set every BatchNormalization's moving mean/variance to the statistics of
    its input on ``images`` (one training-mode pass with momentum 0).

    A randomly initialised deep net collapses its activations towards zero
    (features ~1e-11 at the head of a random MobileNetV2), so its outputs no
    longer depend on the image and any Keras-vs-TFLite comparison or int8
    calibration on it proves nothing. After recalibration every layer sees
    unit-scale, image-dependent activations. Trained models do not need this.
    """
    import keras

    norms = [layer for layer in _all_layers(model)
             if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    try:
        for layer in norms:
            layer.momentum = 0.0
        model(np.asarray(images, np.float32), training=True)
    finally:
        for layer, momentum in zip(norms, saved, strict=True):
            layer.momentum = momentum


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
