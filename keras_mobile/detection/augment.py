"""SSD's training augmentation, with the boxes kept on the image, in TensorFlow ops.

Reference: mmdet 2.x's SSD pipeline (``configs/ssd/ssdlite_mobilenetv2_scratch_600e_coco.py``,
which the EMO SSDLite configs inherit): ``PhotoMetricDistortion`` -> ``Expand`` (zoom
out onto a canvas of the mean colour, ratio 1 to 4, half the time) ->
``MinIoURandomCrop`` (min IoUs 0.1, 0.3, 0.5, 0.7, 0.9, min crop 0.3, aspect 0.5 to 2;
the boxes whose centre leaves the crop are dropped) -> ``Resize`` (no aspect kept)
-> ``RandomFlip`` (horizontal, half the time).

Expand, crop and resize are one window of the original image (:func:`apply_window`:
a box in the original's normalized coordinates, reaching outside [0, 1] where the
canvas is), so the image is resampled once (``crop_and_resize``, its pixel centres
aligned as ``tf.image.resize``'s) and the boxes go through the same affine map.

Deviations from mmdet, for a graph without Python loops: the photometric changes are
always applied (with factors that include no change), in TF's order
(brightness, contrast, saturation, hue); a crop mode draws 50 candidates at once and
takes the first that passes, and when none passes the image is not cropped (mmdet
draws a new mode).

Boxes are normalized ``(ymin, xmin, ymax, xmax)`` throughout; randomness is
``tf.random.stateless_*`` from one ``seed`` (shape ``[2]``), so an element's
augmentation is fixed by its position in the run (as the classification pipeline).
"""

from __future__ import annotations

import tensorflow as tf

MIN_IOUS = (0.1, 0.3, 0.5, 0.7, 0.9)
MIN_CROP = 0.3
EXPAND_RATIO = (1.0, 4.0)
MEAN = (123.675, 116.28, 103.53)  # Expand's canvas colour (the configs' img_norm_cfg mean)
_CANDIDATES = 50


def _seeds(seed, count: int):
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), count))


def photometric(image, seed):
    """``PhotoMetricDistortion`` of a float [0, 255] image: brightness +-32, contrast and
    saturation 0.5 to 1.5, hue +-18 degrees."""
    s = _seeds(seed, 4)
    x = tf.cast(image, tf.float32) / 255.0
    x = tf.image.stateless_random_brightness(x, 32 / 255, s[0])
    x = tf.image.stateless_random_contrast(x, 0.5, 1.5, s[1])
    x = tf.clip_by_value(x, 0.0, 1.0)
    x = tf.image.stateless_random_saturation(x, 0.5, 1.5, s[2])
    x = tf.image.stateless_random_hue(x, 18 / 360, s[3])
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def pairwise_iou(a, b):
    """IoU of every pair of ``[K, 4]`` and ``[M, 4]`` boxes: ``[K, M]``."""
    a, b = a[:, None, :], b[None, :, :]
    h = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    w = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = h * w
    union = ((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
             + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter)
    return tf.math.divide_no_nan(inter, union)


def sample_expand(seed, ratio_range=EXPAND_RATIO, probability: float = 0.5):
    """``Expand``'s canvas as a window of the original image, normalized: ``[4]``
    (ymin, xmin, ymax, xmax), ``[0, 0, 1, 1]`` when it does not expand."""
    s = _seeds(seed, 3)
    ratio = tf.random.stateless_uniform([], s[0], *ratio_range)
    ratio = tf.where(tf.random.stateless_uniform([], s[1]) < probability, ratio, 1.0)
    # The image's top-left corner on the canvas, in image sides: [0, ratio - 1].
    offset = tf.random.stateless_uniform([2], s[2]) * (ratio - 1.0)
    return tf.concat([-offset, ratio - offset], 0)


def sample_crop(boxes, seed, aspect: float = 1.0, min_ious=MIN_IOUS,
                min_crop: float = MIN_CROP):
    """``MinIoURandomCrop``: a window ``[4]`` of the image (normalized) whose IoU with
    every box is at least a min IoU drawn from ``(no crop, *min_ious, 0)`` and that holds
    at least one box centre; ``[0, 0, 1, 1]`` for no crop. ``boxes`` are normalized to
    the same image, ``aspect`` its height / width in pixels."""
    s = _seeds(seed, 5)
    modes = tf.constant((1.0, *min_ious, 0.0))
    mode = tf.gather(modes, tf.random.stateless_uniform(
        [], s[0], 0, len(min_ious) + 2, dtype=tf.int32))
    size = tf.random.stateless_uniform([_CANDIDATES, 2], s[1], min_crop, 1.0)  # h, w
    corner = tf.random.stateless_uniform([_CANDIDATES, 2], s[2]) * (1.0 - size)
    windows = tf.concat([corner, corner + size], 1)
    ratio = size[:, 0] / size[:, 1] * aspect
    boxes = tf.reshape(boxes, [-1, 4])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    overlaps = pairwise_iou(windows, boxes)  # [K, M]
    inside = tf.reduce_all((centres[None] > windows[:, None, :2])
                           & (centres[None] < windows[:, None, 2:]), -1)  # [K, M]
    has_boxes = tf.shape(boxes)[0] > 0
    good = (ratio >= 0.5) & (ratio <= 2.0) & (
        ~has_boxes | ((tf.reduce_min(overlaps, 1) >= mode) & tf.reduce_any(inside, 1)))
    first = tf.argmax(tf.cast(good, tf.int32), output_type=tf.int32)
    crop = tf.reduce_any(good) & (mode < 1.0)
    return tf.where(crop, windows[first], tf.constant([0.0, 0.0, 1.0, 1.0]))


def compose(outer, inner):
    """The window ``inner`` (normalized to the window ``outer``) as a window of the image
    ``outer`` is normalized to: crop ``inner`` of the canvas ``outer``."""
    size = tf.concat([outer[2:] - outer[:2]] * 2, 0)
    return tf.concat([outer[:2]] * 2, 0) + inner * size


def transform_boxes(boxes, labels, window, flip):
    """Boxes and labels seen through ``window`` (normalized to the image) and then
    flipped left-right when ``flip``: boxes whose centre is outside the window are
    dropped, the others clipped to it. Returns ``(boxes [M', 4], labels [M'])``
    normalized to the window."""
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    window = tf.cast(window, tf.float32)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    keep = tf.reduce_all((centres >= window[:2]) & (centres <= window[2:]), -1)
    size = tf.concat([window[2:] - window[:2]] * 2, 0)
    out = tf.clip_by_value((boxes - tf.concat([window[:2]] * 2, 0)) / size, 0.0, 1.0)
    out = tf.where(flip, tf.stack([out[:, 0], 1 - out[:, 3], out[:, 2], 1 - out[:, 1]], 1),
                   out)
    return tf.boolean_mask(out, keep), tf.boolean_mask(labels, keep)


def crop_and_resize(image, window, size, fill=None):
    """``image [H, W, 3]`` float, the normalized ``window`` (may reach outside the image,
    where it is ``fill``, a colour; default :data:`MEAN`) resampled bilinearly to
    ``size`` = (height, width), pixel centres as ``tf.image.resize``'s."""
    image = tf.cast(image, tf.float32)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    out = tf.cast(tf.constant(size), tf.float32)
    fill = tf.constant(MEAN if fill is None else fill, tf.float32)
    start, extent = window[:2], window[2:] - window[:2]
    # Output pixel i samples the image at (start + (i + 0.5) / out * extent) * shape - 0.5
    # (pixels); crop_and_resize samples y1 * (shape - 1) + i * (y2 - y1) * (shape - 1)
    # / (out - 1).
    first = (start * shape + 0.5 * extent * shape / out - 0.5) / tf.maximum(shape - 1, 1)
    last = first + extent * shape * (out - 1) / (out * tf.maximum(shape - 1, 1))
    box = tf.concat([first, last], 0)[None]
    resized = tf.image.crop_and_resize((image - fill)[None], box, [0], size,
                                       extrapolation_value=0.0)[0]
    return resized + fill


def apply_window(image, boxes, labels, window, flip, size):
    """The image through ``window`` (normalized; outside the image, :data:`MEAN`),
    resized to ``size`` and flipped when ``flip``, with its boxes: ``(image [size]
    float32, boxes [M', 4] normalized, labels [M'])``."""
    # Flipping the result is cropping the flipped image through the mirrored window.
    image = tf.cast(image, tf.float32)
    image = tf.cond(flip, lambda: image[:, ::-1], lambda: image)
    window = tf.cast(window, tf.float32)
    mirrored = tf.stack([window[0], 1.0 - window[3], window[2], 1.0 - window[1]])
    resized = crop_and_resize(image, tf.where(flip, mirrored, window), size)
    boxes, labels = transform_boxes(boxes, labels, window, flip)
    return resized, boxes, labels


def ssd_augment(image, boxes, labels, seed, size):
    """mmdet's SSD training augmentation of one image: ``(image [size, size, 3] float32
    [0, 255], boxes [M', 4] normalized, labels [M'])`` from a uint8 or float image,
    normalized boxes and their labels. ``size``: (height, width) of the model input."""
    s = _seeds(seed, 4)
    image = photometric(image, s[0])
    canvas = sample_expand(s[1])  # the canvas, in the image's coordinates
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    # The boxes on the canvas, normalized to it.
    on_canvas = (boxes - tf.concat([canvas[:2]] * 2, 0)) / tf.concat(
        [canvas[2:] - canvas[:2]] * 2, 0)
    crop = sample_crop(on_canvas, s[2], aspect=shape[0] / shape[1])
    window = compose(canvas, crop)
    flip = tf.random.stateless_uniform([], s[3]) < 0.5
    return apply_window(image, boxes, labels, window, flip, size)
