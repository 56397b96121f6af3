"""Image augmentation with stateless random ops: every element's augmentation is a
function of its seed, so input pipelines are reproducible, identical on every
worker, and resumable mid-epoch.

Images are float32 in [0, 255], HWC.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import tensorflow as tf

_FILL = 128.0  # timm's fill colour for geometric ops


class RandAugment(NamedTuple):
    """timm's ``rand-m{magnitude}-mstd{magnitude_std}-n{num_ops}`` with the
    "increasing" op set (``inc1``): each of ``num_ops`` ops is applied with
    probability 0.5 at magnitude ~ N(magnitude, magnitude_std) clipped to [0, 10]."""

    magnitude: float = 9.0
    magnitude_std: float = 0.5
    num_ops: int = 2

    @classmethod
    def parse(cls, spec: str) -> RandAugment | None:
        """``"rand-m9-mstd0.5"`` (timm's syntax, ``-n2`` optional) or ``""``/``"none"``."""
        if spec in ("", "none", None):
            return None
        parts = spec.split("-")
        if parts[0] != "rand":
            raise ValueError(f'randaugment must look like "rand-m9-mstd0.5-n2" or be "none". '
                             f"Received: {spec!r}")
        values = {"m": 9.0, "mstd": 0.5, "n": 2}
        for part in parts[1:]:
            if part == "inc1":  # the only op set implemented
                continue
            key = part.rstrip("0123456789.")
            if key not in values or key == part:
                raise ValueError(f"Unknown RandAugment field {part!r} in {spec!r}; "
                                 "expected m<float>, mstd<float>, n<int>, inc1.")
            values[key] = float(part[len(key):])
        return cls(values["m"], values["mstd"], int(values["n"]))


def _blend(a, b, factor):
    """``b + factor * (a - b)``, clipped to [0, 255] (PIL's ImageEnhance)."""
    return tf.clip_by_value(b + factor * (a - b), 0.0, 255.0)


def _grey(image):
    return tf.image.rgb_to_grayscale(image)


def _affine(image, matrix):
    """Applies the 3x3 output->input ``matrix`` (row-major, last row 0 0 1)."""
    transform = tf.reshape(matrix, [9])[:8][None]
    size = tf.shape(image)[:2]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform, output_shape=size,
        fill_value=_FILL, interpolation="BILINEAR", fill_mode="CONSTANT")[0]


def _centered(image, matrix):
    h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    to = tf.convert_to_tensor([[1.0, 0, w / 2], [0, 1, h / 2], [0, 0, 1]])
    back = tf.convert_to_tensor([[1.0, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]])
    return _affine(image, to @ matrix @ back)


def _ops():
    """(name, fn(image, level in [0, 1], sign in {-1, 1})) in timm's inc1 order."""
    def rotate(img, level, sign):
        a = sign * level * 30.0 * math.pi / 180
        return _centered(img, tf.stack([[tf.cos(a), -tf.sin(a), 0.0],
                                        [tf.sin(a), tf.cos(a), 0.0], [0.0, 0.0, 1.0]]))

    def shear(axis):
        def fn(img, level, sign):
            s = tf.cast(sign * level * 0.3, tf.float32)
            zero, one = tf.constant(0.0), tf.constant(1.0)
            row0 = tf.stack([one, s if axis == 0 else zero, zero])
            row1 = tf.stack([s if axis == 1 else zero, one, zero])
            return _centered(img, tf.stack([row0, row1, tf.stack([zero, zero, one])]))
        return fn

    def translate(axis):
        def fn(img, level, sign):
            size = tf.cast(tf.shape(img)[1 - axis], tf.float32)
            t = sign * level * 0.45 * size
            zero, one = tf.constant(0.0), tf.constant(1.0)
            row0 = tf.stack([one, zero, t if axis == 0 else zero])
            row1 = tf.stack([zero, one, t if axis == 1 else zero])
            return _affine(img, tf.stack([row0, row1, tf.stack([zero, zero, one])]))
        return fn

    def autocontrast(img, level, sign):  # noqa: ARG001
        lo = tf.reduce_min(img, axis=[0, 1], keepdims=True)
        hi = tf.reduce_max(img, axis=[0, 1], keepdims=True)
        scale = tf.where(hi > lo, 255.0 / tf.maximum(hi - lo, 1e-3), 1.0)
        return tf.where(hi > lo, (img - lo) * scale, img)

    def equalize(img, level, sign):  # noqa: ARG001
        def channel(c):
            c8 = tf.cast(c, tf.int32)
            hist = tf.math.bincount(c8, minlength=256, maxlength=256, dtype=tf.float32)
            cdf = tf.cumsum(hist)
            cdf_min = tf.reduce_min(tf.where(hist > 0, cdf, tf.reduce_max(cdf)))
            total = tf.cast(tf.size(c8), tf.float32)
            lut = tf.clip_by_value(tf.round((cdf - cdf_min) / tf.maximum(total - cdf_min, 1.0)
                                            * 255.0), 0, 255)
            return tf.where(total > cdf_min, tf.gather(lut, c8), c)
        return tf.stack([channel(img[..., i]) for i in range(3)], axis=-1)

    def invert(img, level, sign):  # noqa: ARG001
        return 255.0 - img

    def posterize(img, level, sign):  # noqa: ARG001  (increasing: 4 - level*4 bits kept)
        bits = tf.cast(4 - tf.cast(level * 4, tf.int32), tf.int32)
        shift = tf.cast(8 - tf.maximum(bits, 1), tf.uint8)
        i = tf.cast(img, tf.uint8)
        return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(i, shift), shift), tf.float32)

    def solarize(img, level, sign):  # noqa: ARG001  (increasing: threshold 256 - level*256)
        threshold = 256.0 - level * 256.0
        return tf.where(img >= threshold, 255.0 - img, img)

    def solarize_add(img, level, sign):  # noqa: ARG001
        added = tf.clip_by_value(img + level * 110.0, 0.0, 255.0)
        return tf.where(img < 128.0, added, img)

    def enhance(degenerate):
        def fn(img, level, sign):
            return _blend(img, degenerate(img), 1.0 + sign * level * 0.9)
        return fn

    def sharpness_degenerate(img):
        kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
        kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
        smooth = tf.nn.depthwise_conv2d(img[None], kernel, [1, 1, 1, 1], "SAME")[0]
        return smooth

    return (
        ("AutoContrast", autocontrast), ("Equalize", equalize), ("Invert", invert),
        ("Rotate", rotate), ("PosterizeIncreasing", posterize),
        ("SolarizeIncreasing", solarize), ("SolarizeAdd", solarize_add),
        ("ColorIncreasing", enhance(lambda img: tf.tile(_grey(img), [1, 1, 3]))),
        ("ContrastIncreasing", enhance(lambda img: tf.reduce_mean(_grey(img)) * tf.ones_like(img))),
        ("BrightnessIncreasing", enhance(tf.zeros_like)),
        ("SharpnessIncreasing", enhance(sharpness_degenerate)),
        ("ShearX", shear(0)), ("ShearY", shear(1)),
        ("TranslateXRel", translate(0)), ("TranslateYRel", translate(1)),
    )


OPS = _ops()


def rand_augment(image, seed, policy: RandAugment):
    """Applies ``policy`` to one float32 [0, 255] image with the stateless ``seed``."""
    for i in range(policy.num_ops):
        op_seed = tf.random.experimental.stateless_fold_in(seed, i)
        u = tf.random.stateless_uniform([3], op_seed)
        index = tf.cast(u[0] * len(OPS), tf.int32)
        magnitude = policy.magnitude + policy.magnitude_std * tf.random.stateless_normal(
            [], tf.random.experimental.stateless_fold_in(op_seed, 7))
        level = tf.clip_by_value(magnitude, 0.0, 10.0) / 10.0
        sign = tf.where(u[1] < 0.5, -1.0, 1.0)

        def apply(img=image, index=index, level=level, sign=sign):
            return tf.switch_case(index, [lambda f=fn: f(img, level, sign) for _, fn in OPS])

        image = tf.cond(u[2] < 0.5, apply, lambda img=image: img)
        image = tf.ensure_shape(tf.clip_by_value(image, 0.0, 255.0), [None, None, 3])
    return image


def random_resized_crop(image, seed, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Inception-style crop (area fraction in ``scale``, aspect in ``ratio``), resized
    to ``size`` x ``size`` bilinearly; float32 out."""
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.0, aspect_ratio_range=ratio, area_range=scale,
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, begin, crop_size)
    return tf.image.resize(tf.cast(crop, tf.float32), [size, size], method="bilinear")


def center_crop(image, size: int, crop_pct: float):
    """Resize the shorter side to ``size / crop_pct`` then crop the centre ``size`` square."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / crop_pct / tf.reduce_min(shape)
    resized = tf.cast(tf.round(shape * scale), tf.int32)
    resized = tf.maximum(resized, size)
    image = tf.image.resize(tf.cast(image, tf.float32), resized, method="bilinear")
    top = (resized[0] - size) // 2
    left = (resized[1] - size) // 2
    return image[top:top + size, left:left + size]


def train_transform(image, seed, *, size: int, scale=(0.08, 1.0), flip: bool = True,
                    randaugment: RandAugment | None = None):
    """Random-resized crop, horizontal flip and RandAugment for one uint8 image."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    image = random_resized_crop(image, seeds[0], size, scale)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    if randaugment is not None:
        image = rand_augment(image, seeds[2], randaugment)
    return tf.ensure_shape(image, [size, size, 3])
