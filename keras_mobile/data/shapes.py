"""The embedded default dataset: ten classes of rendered shapes and textures.

Every image is a pure function of (split, index), so the dataset is identical on
every machine. Each image varies the foreground and background colour, the
background (flat, gradient or noisy), and the shape's position, scale and
rotation; the classes differ only in geometry. It is prepared through a tfds
builder (:class:`KerasMobileShapes`) so training reads it exactly like
``cifar10`` or ``imagenet2012``.

``keras_mobile_shapes_hard`` (:class:`KerasMobileShapesHard`) is a harder variant
for architecture search, where short training must not saturate: 20 classes, several
of them near-confusable (circle / ellipse / pentagon / hexagon, square / rectangle /
concentric squares / diamond, cross / T / L / arrow, half disk / crescent), lower
contrast, stronger noise and clutter (thin lines, small blobs) that is no class
evidence. Same size and splits, its own seeds.
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


def _grid(size: int):
    """Supersampled pixel centres ``(y, x)`` in [0, 1]."""
    n = size * _SUPERSAMPLE
    return (np.mgrid[0:n, 0:n] + 0.5) / n


def _downsample(m: np.ndarray, size: int) -> np.ndarray:
    """A supersampled boolean mask as float coverage in [0, 1] at ``size``."""
    m = m.astype(np.float32).reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE)
    return m.mean(axis=(1, 3))


def _frame(rng: np.random.Generator, size: int, radii: tuple[float, float], margin: float):
    """A random placement: coordinates ``(u, v)`` in the shape's own frame, in units of its
    radius (drawn from ``radii``; the shape stays ``margin`` from the image centre), and
    the radius."""
    y, x = _grid(size)
    radius = rng.uniform(*radii)
    cx, cy = rng.uniform(0.5 - (margin - radius), 0.5 + (margin - radius), size=2)
    angle = rng.uniform(0, 2 * np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    u = ((x - cx) * cos + (y - cy) * sin) / radius
    v = (-(x - cx) * sin + (y - cy) * cos) / radius
    return u, v, radius


def _regular(u, v, k: int) -> np.ndarray:
    """A regular ``k``-gon of circumradius 1, one vertex up."""
    t = np.pi / 2 + np.arange(k) * 2 * np.pi / k
    return _polygon(u, v, np.stack([np.cos(t), np.sin(t)], 1))


# Geometry of the shape classes, in the shape's frame: f(u, v, r, rng) -> bool mask.
# The easy set's draw from ``rng`` exactly as they always did (its images must not change).
_GEOMETRY = {
    "circle": lambda u, v, r, rng: r <= 1,
    "ring": lambda u, v, r, rng: (r <= 1) & (r >= rng.uniform(0.45, 0.65)),
    "square": lambda u, v, r, rng: (np.abs(u) <= 0.75) & (np.abs(v) <= 0.75),
    "triangle": lambda u, v, r, rng: _regular(u, v, 3),
    "cross": lambda u, v, r, rng: _cross(u, v, rng.uniform(0.25, 0.35)),
    # Five points: the boundary radius swings between 0.45 and 1 with the angle.
    "star": lambda u, v, r, rng: r <= 0.45 + 0.55 * np.abs(np.cos(2.5 * np.arctan2(v, u))) ** 3,
    "half_disk": lambda u, v, r, rng: (r <= 1) & (v >= 0),
    # The hard set's additions.
    "ellipse": lambda u, v, r, rng: np.hypot(u, v / rng.uniform(0.55, 0.75)) <= 1,
    "rectangle": lambda u, v, r, rng: (np.abs(u) <= 0.9) & (np.abs(v) <= rng.uniform(0.4, 0.55)),
}


def _cross(u, v, arm: float) -> np.ndarray:
    return ((np.abs(u) <= arm) & (np.abs(v) <= 1)) | ((np.abs(v) <= arm) & (np.abs(u) <= 1))


def _mask(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """Float coverage in [0, 1] of the foreground for one image of class ``label``."""
    u, v, radius = _frame(rng, size, (0.16, 0.32), 0.45)
    r = np.hypot(u, v)
    name = CLASSES[label]
    m = _geometry(name, u, v, r, radius, rng)
    return _downsample(m, size)


def _geometry(name: str, u, v, r, radius: float, rng: np.random.Generator) -> np.ndarray:
    """The boolean mask of class ``name`` in the shape's frame."""
    if name in _GEOMETRY:
        return _GEOMETRY[name](u, v, r, rng)
    # Textures fill the whole image.
    period = rng.uniform(0.1, 0.2)
    if name == "stripes":
        return np.mod(u * radius / period, 1.0) < 0.5
    if name == "checkerboard":
        return (np.floor(u * radius / period) + np.floor(v * radius / period)) % 2 == 0
    if name == "dots":
        fu, fv = np.mod(u * radius / period, 1.0) - 0.5, np.mod(v * radius / period, 1.0) - 0.5
        return np.hypot(fu, fv) <= rng.uniform(0.22, 0.32)
    raise ValueError(f"unknown shape class {name!r}")


def _colours(rng: np.random.Generator, distance: float = 90):
    """A foreground and background colour at least ``distance`` (of 255) apart."""
    while True:
        fg, bg = rng.uniform(0, 255, size=(2, 3))
        if np.linalg.norm(fg - bg) >= distance:
            return fg, bg


def _background(rng: np.random.Generator, bg: np.ndarray, size: int,
                noise: float) -> np.ndarray:
    """Flat, a linear gradient towards a second colour, or ``bg`` plus Gaussian noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    style = rng.integers(3)
    background = np.broadcast_to(bg, (size, size, 3)).astype(np.float32)
    if style == 1:  # linear gradient towards a second colour
        direction = rng.uniform(0, 2 * np.pi)
        t = (np.cos(direction) * (xx - 0.5) + np.sin(direction) * (yy - 0.5) + 0.5)[..., None]
        background = background * (1 - 0.5 * t) + 0.5 * t * rng.uniform(0, 255, size=3)
    elif style == 2:  # noisy
        background = background + rng.normal(0, noise, size=(size, size, 3))
    return background


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def render(label: int, seed) -> np.ndarray:
    """One (64, 64, 3) uint8 image of class ``label``; ``seed`` fixes every choice."""
    rng = np.random.default_rng(seed)
    size = IMAGE_SIZE
    mask = _mask(label, rng, size)[..., None]
    fg, bg = _colours(rng)
    background = _background(rng, bg, size, noise=18)
    image = mask * fg + (1 - mask) * background + rng.normal(0, 4, size=(size, size, 3))
    return _to_uint8(image)


def _split_examples(split: str, count, classes, draw, seeds):
    """Yields ``(key, {"image", "label"})`` for a split; balanced, interleaved classes."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}. Received: split={split!r}")
    for i in range(SPLITS[split] if count is None else count):
        label = i % len(classes)
        yield i, {"image": draw(label, (seeds[split], i)), "label": label}


def examples(split: str, count: int | None = None):
    """Yields ``(key, {"image", "label"})`` for a split; balanced, interleaved classes."""
    return _split_examples(split, count, CLASSES, render, _SPLIT_SEED)


HARD_NAME = "keras_mobile_shapes_hard"
HARD_CLASSES = ("circle", "ellipse", "ring", "square", "rectangle", "triangle", "cross", "star",
                "stripes", "checkerboard")
_HARD_SPLIT_SEED = {"train": 101, "validation": 102}  # apart from the easy set's
# The difficulty knobs; measured accuracies in docs/training.md.
_HARD_RADII = (0.14, 0.28)  # of the image side (the easy set: 0.16 to 0.32)
_HARD_MARGIN = 0.45  # as the easy set
_HARD_DISTANCE = 60  # least foreground / background colour distance (the easy set: 90)
_HARD_BACKGROUND_NOISE = 22  # the noisy background style's (the easy set: 18)
_HARD_NOISE = 6  # the whole image's (the easy set: 4)
_HARD_CLUTTER = (1, 3)  # clutter items per image, at least and at most


def _clutter(rng: np.random.Generator, size: int) -> np.ndarray:
    """Coverage of one clutter item: a thin line across the image or a small blob."""
    y, x = _grid(size)
    if rng.integers(2):  # a thin line segment
        (x0, y0), (x1, y1) = rng.uniform(0, 1, size=(2, 2))
        width = rng.uniform(0.006, 0.015)
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((x - x0) * dx + (y - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
        m = np.hypot(x - x0 - t * dx, y - y0 - t * dy) <= width
    else:  # a small blob, round or square
        radius = rng.uniform(0.02, 0.05)
        cx, cy = rng.uniform(0.05, 0.95, size=2)
        if rng.integers(2):
            m = np.hypot(x - cx, y - cy) <= radius
        else:
            m = (np.abs(x - cx) <= radius) & (np.abs(y - cy) <= radius)
    return _downsample(m, size)


def render_hard(label: int, seed) -> np.ndarray:
    """One (64, 64, 3) uint8 image of :data:`HARD_CLASSES` ``[label]``; ``seed`` fixes every
    choice. Clutter is drawn under the shape, in its own colours, so only the shape's
    geometry tells the class."""
    rng = np.random.default_rng(seed)
    size = IMAGE_SIZE
    u, v, radius = _frame(rng, size, _HARD_RADII, _HARD_MARGIN)
    mask = _downsample(_geometry(HARD_CLASSES[label], u, v, np.hypot(u, v), radius, rng), size)
    fg, bg = _colours(rng, _HARD_DISTANCE)
    image = _background(rng, bg, size, noise=_HARD_BACKGROUND_NOISE)
    for _ in range(rng.integers(_HARD_CLUTTER[0], _HARD_CLUTTER[1] + 1)):
        c = _clutter(rng, size)[..., None]
        image = c * rng.uniform(0, 255, size=3) + (1 - c) * image
    image = mask[..., None] * fg + (1 - mask[..., None]) * image
    return _to_uint8(image + rng.normal(0, _HARD_NOISE, size=(size, size, 3)))


def hard_examples(split: str, count: int | None = None):
    """:func:`examples` of the hard set."""
    return _split_examples(split, count, HARD_CLASSES, render_hard, _HARD_SPLIT_SEED)


class _Generated(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A generated 64x64 classification set: ``CLASS_NAMES`` and ``EXAMPLES(split)``."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    CLASS_NAMES: tuple = ()

    @staticmethod
    def EXAMPLES(split):  # noqa: N802  (a class constant)
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
                "label": tfds.features.ClassLabel(names=list(self.CLASS_NAMES)),
            }),
            supervised_keys=("image", "label"),
            description=self.__doc__,
        )

    def _split_generators(self, dl_manager):  # noqa: ARG002  (nothing to download)
        return {split: self.EXAMPLES(split) for split in SPLITS}

    def _generate_examples(self, split):  # tfds' hook; _split_generators passes generators
        return self.EXAMPLES(split)


class KerasMobileShapes(_Generated):
    """keras_mobile's embedded dataset: 10 classes of rendered shapes and textures,
    64x64 RGB, 4000 train and 1000 validation images, generated locally."""

    CLASS_NAMES = CLASSES
    EXAMPLES = staticmethod(examples)


class KerasMobileShapesHard(_Generated):
    """keras_mobile's harder embedded dataset, for architecture search: 10 classes (two
    near-confusable pairs) of smaller, lower-contrast rendered shapes and textures on
    noisier, cluttered backgrounds, 64x64 RGB, 4000 train and 1000 validation images,
    generated locally."""

    CLASS_NAMES = HARD_CLASSES
    EXAMPLES = staticmethod(hard_examples)
