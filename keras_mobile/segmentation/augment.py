"""Segmentation augmentation: mmseg's ADE20K training recipe at any crop size, in ``tf.data``.

mmseg (``configs/_base_/datasets/ade20k.py``, crop 512): ``RandomResize(scale=(2048,
512), ratio_range=(0.5, 2.0), keep_ratio=True)``, ``RandomCrop(512, cat_max_ratio=
0.75)``, ``RandomFlip(0.5)``, ``PhotoMetricDistortion``, ``Pad(512)`` (image 0, mask
255). Here the scale is ``(4 S, S)`` for crops of ``S x S``; the photometric
distortion is left out. Every random choice is stateless, from one ``seed`` (a
``[2]`` int tensor), so an element's augmentation is fixed by its seed alone.

The image is resized bilinearly, the mask (class ids, ``[H, W]`` int32) to the same
size by nearest neighbour: both sample the same pixel centres (half-pixel), so the
mask stays on its image; crop, flip and pad cut both alike.
"""

from __future__ import annotations

import tensorflow as tf

IGNORE_LABEL = 255
RATIO_RANGE = (0.5, 2.0)
CAT_MAX_RATIO = 0.75  # mmseg: a crop where one class covers 75% or more is redrawn
_CROP_TRIES = 10  # mmseg's


def resize(image, label, size):
    """``image`` ``[H, W, 3]`` to ``float32 [h, w, 3]`` (bilinear) and ``label`` ``[H, W]``
    to ``int32 [h, w]`` (nearest), ``size = (h, w)``."""
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
    label = tf.image.resize(tf.cast(label, tf.int32)[..., None], size, method="nearest")[..., 0]
    return image, label


def random_resize(image, label, seed, scale, ratio_range=RATIO_RANGE):
    """mmseg's ``RandomResize(scale, ratio_range, keep_ratio=True)``: a ratio ``r``
    uniform in ``ratio_range``, then the largest size of the image's aspect that fits
    ``(r * scale[0], r * scale[1])`` as (long side, short side)."""
    ratio = tf.random.stateless_uniform([], seed, *ratio_range)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    long_side, short_side = tf.reduce_max(shape), tf.reduce_min(shape)
    factor = tf.minimum(ratio * scale[0] / long_side, ratio * scale[1] / short_side)
    size = tf.maximum(tf.cast(tf.round(shape * factor), tf.int32), 1)
    return resize(image, label, size)


def _crop_ok(label, max_ratio):
    """mmseg's ``cat_max_ratio`` test: at least two classes, none covering ``max_ratio``
    of the crop's labelled pixels."""
    ids = tf.boolean_mask(label, label != IGNORE_LABEL)
    counts = tf.math.bincount(ids, minlength=IGNORE_LABEL, maxlength=IGNORE_LABEL)
    total = tf.cast(tf.reduce_sum(counts), tf.float32)
    return (tf.math.count_nonzero(counts) > 1) & (
        tf.cast(tf.reduce_max(counts), tf.float32) < max_ratio * total)


def random_crop(image, label, seed, size: int, cat_max_ratio: float | None = CAT_MAX_RATIO):
    """mmseg's ``RandomCrop((size, size), cat_max_ratio)``: a window of at most
    ``size x size`` placed uniformly; with ``cat_max_ratio``, redrawn up to 10 times
    while one class covers that share of its labelled pixels (or it holds one class)."""
    shape = tf.shape(label)
    height, width = tf.minimum(shape[0], size), tf.minimum(shape[1], size)

    def window(i):
        y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(seed, i), 2))
        top = tf.random.stateless_uniform([], y_seed, 0, shape[0] - height + 1, tf.int32)
        left = tf.random.stateless_uniform([], x_seed, 0, shape[1] - width + 1, tf.int32)
        return top, left

    top, left = window(0)
    if cat_max_ratio is not None and cat_max_ratio < 1.0:
        def retry(i, top, left):
            return i + 1, *window(i + 1)

        def bad(i, top, left):
            crop = label[top:top + height, left:left + width]
            return (i < _CROP_TRIES) & tf.logical_not(_crop_ok(crop, cat_max_ratio))

        _, top, left = tf.while_loop(bad, retry, (tf.constant(0), top, left))
    return (image[top:top + height, left:left + width],
            label[top:top + height, left:left + width])


def random_flip(image, label, seed, probability: float = 0.5):
    """Both mirrored left-right with ``probability``."""
    flip = tf.random.stateless_uniform([], seed) < probability
    return (tf.cond(flip, lambda: image[:, ::-1], lambda: image),
            tf.cond(flip, lambda: label[:, ::-1], lambda: label))


def pad(image, label, size: int):
    """mmseg's ``Pad``: to ``size x size`` at the bottom and right, the image with 0 and
    the mask with :data:`IGNORE_LABEL` (no loss on the border)."""
    shape = tf.shape(label)
    paddings = [[0, tf.maximum(size - shape[0], 0)], [0, tf.maximum(size - shape[1], 0)]]
    image = tf.pad(image, paddings + [[0, 0]], constant_values=0.0)
    label = tf.pad(label, paddings, constant_values=IGNORE_LABEL)
    return image, label


def train_augment(image, label, seed, size: int, *, ratio_range=RATIO_RANGE,
                  cat_max_ratio: float | None = CAT_MAX_RATIO, flip_probability: float = 0.5):
    """mmseg's ADE20K training transform scaled to ``size``: :func:`random_resize` to
    ``(4 size, size) x [0.5, 2]``, :func:`random_crop` of ``size x size``,
    :func:`random_flip`, :func:`pad`. ``image`` ``[H, W, 3]``, ``label`` ``[H, W]``
    class ids; returns ``(float32 [size, size, 3] in [0, 255], int32 [size, size])``."""
    resize_seed, crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3))
    image, label = random_resize(image, label, resize_seed, (4.0 * size, float(size)),
                                 ratio_range)
    image, label = random_crop(image, label, crop_seed, size, cat_max_ratio)
    image, label = random_flip(image, label, flip_seed, flip_probability)
    image, label = pad(image, label, size)
    return tf.ensure_shape(image, [size, size, 3]), tf.ensure_shape(label, [size, size])


def eval_resize(image, label, size: int):
    """The evaluation transform: both to ``size x size`` (image bilinear, mask nearest)."""
    image, label = resize(image, label, (size, size))
    return tf.ensure_shape(image, [size, size, 3]), tf.ensure_shape(label, [size, size])
