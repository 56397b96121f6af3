"""The embedded default dataset: ten classes of rendered shapes and textures.

Every image is a pure function of (split, index), so the dataset is identical on
every machine. Each image varies the foreground and background colour, the
background (flat, gradient or noisy), and the shape's position, scale and
rotation; the classes differ only in geometry. It is prepared through a tfds
builder (:class:`KerasMobileShapes`) so training reads it exactly like
``cifar10`` or ``imagenet2012``.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

NAME = "keras_mobile_shapes"
CLASSES = ("circle", "ring", "square", "triangle", "cross", "star", "half_disk",
           "stripes", "checkerboard", "dots")
IMAGE_SIZE = 64
SPLITS = {"train": 4000, "validation": 1000}
_SPLIT_SEED = {"train": 1, "validation": 2}
_SUPERSAMPLE = 2  # antialiasing: render at 2x and average


def _polygon(px, py, vertices: np.ndarray) -> np.ndarray:
    """Inside test for a convex polygon with counter-clockwise vertices."""
    inside = np.ones(px.shape, bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        inside &= (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0) >= 0
    return inside


def _mask(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """Float coverage in [0, 1] of the foreground for one image of class ``label``."""
    n = size * _SUPERSAMPLE
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / n  # pixel centres in [0, 1]
    radius = rng.uniform(0.16, 0.32)
    cx, cy = rng.uniform(0.5 - (0.45 - radius), 0.5 + (0.45 - radius), size=2)
    angle = rng.uniform(0, 2 * np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    # Coordinates in the shape's own frame, in units of its radius.
    u = ((x - cx) * cos + (y - cy) * sin) / radius
    v = (-(x - cx) * sin + (y - cy) * cos) / radius
    r = np.hypot(u, v)
    name = CLASSES[label]
    if name == "circle":
        m = r <= 1
    elif name == "ring":
        m = (r <= 1) & (r >= rng.uniform(0.45, 0.65))
    elif name == "square":
        m = (np.abs(u) <= 0.75) & (np.abs(v) <= 0.75)
    elif name == "triangle":
        t = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        m = _polygon(u, v, np.stack([np.cos(t), np.sin(t)], 1))
    elif name == "cross":
        arm = rng.uniform(0.25, 0.35)
        m = ((np.abs(u) <= arm) & (np.abs(v) <= 1)) | ((np.abs(v) <= arm) & (np.abs(u) <= 1))
    elif name == "star":
        theta = np.arctan2(v, u)
        # Five points: the boundary radius swings between 0.45 and 1 with the angle.
        boundary = 0.45 + 0.55 * np.abs(np.cos(2.5 * theta)) ** 3
        m = r <= boundary
    elif name == "half_disk":
        m = (r <= 1) & (v >= 0)
    else:  # textures fill the whole image
        period = rng.uniform(0.1, 0.2)
        if name == "stripes":
            m = np.mod(u * radius / period, 1.0) < 0.5
        elif name == "checkerboard":
            m = (np.floor(u * radius / period) + np.floor(v * radius / period)) % 2 == 0
        else:  # dots
            fu, fv = np.mod(u * radius / period, 1.0) - 0.5, np.mod(v * radius / period, 1.0) - 0.5
            m = np.hypot(fu, fv) <= rng.uniform(0.22, 0.32)
    m = m.astype(np.float32).reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE)
    return m.mean(axis=(1, 3))


def _colours(rng: np.random.Generator):
    """A foreground and background colour at least 90 (of 255) apart."""
    while True:
        fg, bg = rng.uniform(0, 255, size=(2, 3))
        if np.linalg.norm(fg - bg) >= 90:
            return fg, bg


def render(label: int, seed) -> np.ndarray:
    """One (64, 64, 3) uint8 image of class ``label``; ``seed`` fixes every choice."""
    rng = np.random.default_rng(seed)
    size = IMAGE_SIZE
    mask = _mask(label, rng, size)[..., None]
    fg, bg = _colours(rng)
    yy, xx = np.mgrid[0:size, 0:size] / size
    style = rng.integers(3)
    background = np.broadcast_to(bg, (size, size, 3)).astype(np.float32)
    if style == 1:  # linear gradient towards a second colour
        direction = rng.uniform(0, 2 * np.pi)
        t = (np.cos(direction) * (xx - 0.5) + np.sin(direction) * (yy - 0.5) + 0.5)[..., None]
        background = background * (1 - 0.5 * t) + 0.5 * t * rng.uniform(0, 255, size=3)
    elif style == 2:  # noisy
        background = background + rng.normal(0, 18, size=(size, size, 3))
    image = mask * fg + (1 - mask) * background + rng.normal(0, 4, size=(size, size, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def examples(split: str, count: int | None = None):
    """Yields ``(key, {"image", "label"})`` for a split; balanced, interleaved classes."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}. Received: split={split!r}")
    for i in range(SPLITS[split] if count is None else count):
        label = i % len(CLASSES)
        yield i, {"image": render(label, (_SPLIT_SEED[split], i)), "label": label}


class KerasMobileShapes(tfds.core.GeneratorBasedBuilder):
    """keras_mobile's embedded dataset: 10 classes of rendered shapes and textures,
    64x64 RGB, 4000 train and 1000 validation images, generated locally."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
                "label": tfds.features.ClassLabel(names=list(CLASSES)),
            }),
            supervised_keys=("image", "label"),
            description=self.__doc__,
        )

    def _split_generators(self, dl_manager):  # noqa: ARG002  (nothing to download)
        return {split: examples(split) for split in SPLITS}

    def _generate_examples(self, split):  # tfds' hook; _split_generators passes generators
        return examples(split)
