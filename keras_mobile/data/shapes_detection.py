"""The embedded detection and segmentation dataset: six classes of rendered objects.

Each 128x128 image holds 0 to 6 objects of the classes :data:`CLASSES`, of any
colour standing out from what it covers, 10 to 120 pixels long (log-uniform; by
COCO's areas about 60% small, 40% medium and a few large), stretched (aspect 0.55
to 1.8) and turned by up to 20 degrees, over
a cluttered background: a gradient between two random colours, low-frequency
blotches, a few thin lines and pixel noise. Objects may overlap: a later object
is drawn over the earlier ones, but it hides at most 30% of any earlier box, so
every object stays recognizable. About 5% of the images hold no object.

Every example has

* ``image``: ``(128, 128, 3)`` uint8 RGB;
* ``objects``: ``bbox`` (tfds ``BBoxFeature``, normalized ``(ymin, xmin, ymax,
  xmax)``, the tight box of the object's rendered pixels, which can be cut by the
  image border) and ``label`` (``ClassLabel`` over :data:`CLASSES`), in drawing
  order;
* ``mask``: ``(128, 128, 1)`` uint8, the class of every pixel plus one (0 is the
  background), from the same rendering as the boxes (what is visible on top).

Every image is a pure function of ``(split, index)`` (numpy's ``default_rng``), so
the dataset is the same on every machine; nothing is downloaded. It is prepared
through a tfds builder (:class:`KerasMobileShapesDetection`), as
:mod:`keras_mobile.data.shapes` is.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

NAME = "keras_mobile_shapes_detection"
CLASSES = ("rectangle", "ellipse", "triangle", "ring", "cross", "diamond")
IMAGE_SIZE = 128
SPLITS = {"train": 4000, "validation": 500}
MAX_OBJECTS = 6
_SPLIT_SEED = {"train": 11, "validation": 12}
_OBJECT_COUNTS = np.arange(MAX_OBJECTS + 1)
_OBJECT_COUNT_P = (0.05, 0.2, 0.25, 0.2, 0.15, 0.1, 0.05)
_SIZE_RANGE = (10.0, 120.0)  # the longer side of an object's shape, pixels (log-uniform)
_MAX_HIDDEN = 0.3  # a new object covers at most this share of an earlier object's box
_MIN_CONTRAST = 60.0  # RGB distance of an object's colour from the mean it covers
_SUPERSAMPLE = 3  # coverage (antialiasing) from 3x3 samples per pixel


def _inside(name: str, u: np.ndarray, v: np.ndarray, param: float) -> np.ndarray:
    """Whether the points ``(u, v)`` of the shape's own frame (the shape spans
    ``[-1, 1]`` on both axes) are inside a ``name`` shape."""
    if name == "rectangle":
        return (np.abs(u) <= 1) & (np.abs(v) <= 1)
    if name == "ellipse":
        return u * u + v * v <= 1
    if name == "triangle":  # apex at v = -1, base at v = 1
        return (v <= 1) & (np.abs(u) <= (v + 1) / 2)
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 1) & (r2 >= param * param)
    if name == "cross":
        return ((np.abs(u) <= param) & (np.abs(v) <= 1)) | (
            (np.abs(v) <= param) & (np.abs(u) <= 1))
    if name == "diamond":
        return np.abs(u) + np.abs(v) <= 1
    raise ValueError(f"unknown shape {name!r}")


def _coverage(label: int, rng: np.random.Generator, size: int):
    """One object: ``(coverage [h, w] in [0, 1], (top, left))`` of the pixels it may
    touch (the window it is drawn in), or None when it falls outside the image."""
    longer = np.exp(rng.uniform(*np.log(_SIZE_RANGE)))
    aspect = np.exp(rng.uniform(np.log(0.55), np.log(1.8)))  # height / width of the shape
    half_h, half_w = (longer / 2, longer / 2 / aspect) if aspect >= 1 else (
        longer / 2 * aspect, longer / 2)
    half_h, half_w = max(half_h, 2.5), max(half_w, 2.5)
    angle = np.deg2rad(rng.uniform(-20, 20))
    param = {"ring": rng.uniform(0.45, 0.7), "cross": rng.uniform(0.25, 0.4)}.get(
        CLASSES[label], 0.0)
    # The centre may lie near the border: part of a large object can be cut off.
    cy, cx = rng.uniform(0.05 * size, 0.95 * size, size=2)
    reach = np.hypot(half_h, half_w)
    top, left = max(int(cy - reach), 0), max(int(cx - reach), 0)
    bottom, right = min(int(cy + reach) + 2, size), min(int(cx + reach) + 2, size)
    if bottom <= top or right <= left:
        return None
    s = _SUPERSAMPLE
    ys = top + (np.arange((bottom - top) * s) + 0.5) / s
    xs = left + (np.arange((right - left) * s) + 0.5) / s
    y, x = ys[:, None] - cy, xs[None, :] - cx
    cos, sin = np.cos(angle), np.sin(angle)
    u = (x * cos + y * sin) / half_w
    v = (-x * sin + y * cos) / half_h
    inside = _inside(CLASSES[label], u, v, param).astype(np.float32)
    coverage = inside.reshape(bottom - top, s, right - left, s).mean(axis=(1, 3))
    return coverage, (top, left)


def _tight_box(pixels: np.ndarray, top: int, left: int):
    """``(ymin, xmin, ymax, xmax)`` pixel edges of the True pixels of a window, or None."""
    rows, cols = np.flatnonzero(pixels.any(1)), np.flatnonzero(pixels.any(0))
    if rows.size == 0:
        return None
    return (top + rows[0], left + cols[0], top + rows[-1] + 1, left + cols[-1] + 1)


def _overlap(a, b) -> float:
    """Intersection area of two pixel boxes."""
    h = min(a[2], b[2]) - max(a[0], b[0])
    w = min(a[3], b[3]) - max(a[1], b[1])
    return max(h, 0) * max(w, 0)


def _area(box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cluttered ``(size, size, 3)`` float background."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres
    first, second = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    t = (np.cos(direction) * (xx / size - 0.5) + np.sin(direction) * (yy / size - 0.5)
         + 0.5)[..., None].astype(np.float32)
    image = first * (1 - t) + second * t
    # Low-frequency blotches: a coarse random grid, bilinearly upsampled.
    cells = int(rng.integers(2, 8))
    coarse = rng.normal(0, rng.uniform(10, 35), size=(cells + 1, cells + 1, 3)).astype(np.float32)
    at = np.linspace(0, cells, size, dtype=np.float32)
    low, frac = np.minimum(at.astype(int), cells - 1), at - np.minimum(at.astype(int), cells - 1)
    rows = coarse[low] * (1 - frac)[:, None, None] + coarse[low + 1] * frac[:, None, None]
    blotches = rows[:, low] * (1 - frac)[None, :, None] + rows[:, low + 1] * frac[None, :, None]
    image = image + blotches
    for _ in range(rng.integers(0, 4)):  # thin lines of clutter, 1 to 2 pixels wide
        (y0, x0), (y1, x1) = rng.uniform(0, size, size=(2, 2))
        length = max(np.hypot(y1 - y0, x1 - x0), 1e-3)
        distance = np.abs((y1 - y0) * (xx - x0) - (x1 - x0) * (yy - y0)) / length
        along = ((yy - y0) * (y1 - y0) + (xx - x0) * (x1 - x0)) / length
        on = ((distance <= rng.uniform(0.5, 1.0)) & (along >= 0) & (along <= length))[..., None]
        image = np.where(on, rng.uniform(0, 255, size=3), image)
    return image


def render(seed, size: int = IMAGE_SIZE):
    """One example: ``(image [size, size, 3] uint8, boxes [n, 4] float32 normalized
    (ymin, xmin, ymax, xmax), labels [n] int64, mask [size, size, 1] uint8)``;
    ``seed`` fixes every choice."""
    rng = np.random.default_rng(seed)
    image = _background(rng, size)
    mask = np.zeros((size, size), np.uint8)
    boxes, labels = [], []
    count = rng.choice(_OBJECT_COUNTS, p=_OBJECT_COUNT_P)
    for _ in range(count):
        label = int(rng.integers(len(CLASSES)))
        colour = rng.uniform(0, 255, size=3)
        for _ in range(20):  # placements until one hides little of the earlier objects
            drawn = _coverage(label, rng, size)
            if drawn is None:
                continue
            coverage, (top, left) = drawn
            box = _tight_box(coverage >= 0.5, top, left)
            if box is None:
                continue
            if all(_overlap(box, old) <= _MAX_HIDDEN * _area(old) for old in boxes):
                break
        else:
            continue  # no room left for this object
        h, w = coverage.shape
        window = image[top:top + h, left:left + w]
        behind = window[coverage >= 0.5].mean(axis=0)
        for _ in range(10):  # a colour that stands out from what the object covers
            if np.linalg.norm(colour - behind) >= _MIN_CONTRAST:
                break
            colour = rng.uniform(0, 255, size=3)
        # A slight shading across the object, so its colour is not flat.
        shade = rng.normal(0, 12, size=3) * np.linspace(-1, 1, w)[None, :, None]
        fill = colour + shade
        alpha = coverage[..., None]
        image[top:top + h, left:left + w] = alpha * fill + (1 - alpha) * window
        mask[top:top + h, left:left + w][coverage >= 0.5] = label + 1
        boxes.append(box)
        labels.append(label)
    image += rng.standard_normal(image.shape, np.float32) * rng.uniform(3, 12)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    boxes = (np.asarray(boxes, np.float32).reshape(-1, 4) / size).astype(np.float32)
    return image, boxes, np.asarray(labels, np.int64), mask[..., None]


def examples(split: str, count: int | None = None):
    """Yields ``(key, {"image", "objects", "mask"})`` for a split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}. Received: split={split!r}")
    for i in range(SPLITS[split] if count is None else count):
        image, boxes, labels, mask = render((_SPLIT_SEED[split], i))
        yield i, {"image": image, "objects": {"bbox": boxes, "label": labels}, "mask": mask}


class KerasMobileShapesDetection(tfds.core.GeneratorBasedBuilder):
    """keras_mobile's embedded detection / segmentation dataset: 0-6 objects of 6
    classes per 128x128 image on a cluttered background, with boxes, labels and a
    class mask; 4000 train and 500 validation images, generated locally."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
                "objects": tfds.features.Sequence({
                    "bbox": tfds.features.BBoxFeature(),
                    "label": tfds.features.ClassLabel(names=list(CLASSES)),
                }),
                "mask": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 1)),
            }),
            description=self.__doc__,
        )

    def _split_generators(self, dl_manager):  # noqa: ARG002  (nothing to download)
        return {split: examples(split) for split in SPLITS}

    def _generate_examples(self, split):  # tfds' hook; _split_generators passes generators
        return examples(split)
