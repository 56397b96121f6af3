"""Anchors of SSDLite and RetinaNet, exactly as mmdetection 2.x generates them.

Reference: mmdet 2.x ``mmdet/core/anchor/anchor_generator.py`` (the copy in
``zhangzjn/EMO/down-stream-tasks/mmdetection``): ``SSDAnchorGenerator`` with the
EMO SSDLite configs (``configs/ssd_emo/ssdlite_emo_*_pretrain_coco.py``) and
``AnchorGenerator`` with RetinaNet's (``configs/_base_/models/retinanet_emo_fpn.py``).

Anchors live outside the model (a constant, not a layer: tfmot and TFLite see only
the convolutions). Their order is the order of the model's outputs: level by level,
then row-major over the map (y, then x), then the anchors of one location in
mmdet's order:

* SSD: scale 1 ratio 1 (``min_size``), scale ``sqrt(max / min)`` ratio 1, then
  scale 1 with ratios (h / w) 1/2, 2, 1/3, 3 (``scale_major=False`` and the
  ``indices.insert(1, ...)`` reordering of ``SSDAnchorGenerator``); centers at
  ``stride / 2 + i * stride``.
* RetinaNet: ratios 0.5, 1, 2 (outer), scales ``4 * 2**(k/3)``, k = 0, 1, 2 (inner)
  (``scale_major=True``), times the stride; centers at ``i * stride`` (mmdet 2.x's
  ``center_offset=0``).

The arithmetic is float32 in mmdet's order of operations, so the values equal
mmdet's to the bit. Boxes are ``(ymin, xmin, ymax, xmax)`` in input pixels;
:func:`to_center_normalized` gives TFLite's / MediaPipe's ``(yc, xc, h, w)``
normalized to the input size.

Example:
    >>> det = keras_mobile.detection.SSDLite("EMO1M", backbone_weights=None)
    >>> anchors = keras_mobile.detection.anchors_for(det)  # (3234, 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class SSDLevel(NamedTuple):
    """One level of ``SSDAnchorGenerator`` (pixels of the 320x320 input)."""

    stride: int
    min_size: int
    max_size: int
    ratios: tuple = (2, 3)


SSD_LEVELS = (  # ssdlite_emo_*_pretrain_coco.py: strides, min_sizes, max_sizes, ratios
    SSDLevel(16, 48, 100),
    SSDLevel(32, 100, 150),
    SSDLevel(64, 150, 202),
    SSDLevel(107, 202, 253),
    SSDLevel(160, 253, 304),
    SSDLevel(320, 304, 320),
)
SSD_FEATURE_SIZES = (20, 10, 5, 3, 2, 1)  # the maps of a 320x320 input

RETINANET_STRIDES = (8, 16, 32, 64, 128)  # P3 ... P7
RETINANET_OCTAVE_BASE_SCALE = 4
RETINANET_SCALES_PER_OCTAVE = 3
RETINANET_RATIOS = (0.5, 1.0, 2.0)

_F32 = np.float32


def _base_anchors(base_size, scales, ratios, center, scale_major):
    """mmdet's ``gen_single_level_base_anchors`` in float32: ``[A, 4]`` (x1, y1, x2, y2)."""
    scales = np.asarray(scales, _F32)
    ratios = np.asarray(ratios, _F32)
    h_ratios = np.sqrt(ratios)
    w_ratios = _F32(1) / h_ratios
    w = h = _F32(base_size)
    if scale_major:
        ws = (w * w_ratios[:, None] * scales[None, :]).reshape(-1)
        hs = (h * h_ratios[:, None] * scales[None, :]).reshape(-1)
    else:
        ws = (w * scales[:, None] * w_ratios[None, :]).reshape(-1)
        hs = (h * scales[:, None] * h_ratios[None, :]).reshape(-1)
    cx = cy = _F32(center)
    half = _F32(0.5)
    return np.stack([cx - half * ws, cy - half * hs, cx + half * ws, cy + half * hs], axis=-1)


def _grid(base_xyxy, stride, size):
    """mmdet's ``single_level_grid_priors``: ``[H * W * A, 4]`` (ymin, xmin, ymax, xmax)."""
    height, width = size
    shift_x = np.arange(width, dtype=_F32) * _F32(stride)
    shift_y = np.arange(height, dtype=_F32) * _F32(stride)
    xx = np.tile(shift_x, height)
    yy = np.repeat(shift_y, width)
    shifts = np.stack([xx, yy, xx, yy], axis=-1)
    xyxy = (base_xyxy[None, :, :] + shifts[:, None, :]).reshape(-1, 4)
    return xyxy[:, [1, 0, 3, 2]]


def _ssd_base_xyxy(level: SSDLevel) -> np.ndarray:
    scales = [1.0, np.sqrt(level.max_size / level.min_size)]
    ratios = [1.0]
    for r in level.ratios:
        ratios += [1 / r, r]
    xyxy = _base_anchors(level.min_size, scales, ratios, level.stride / 2.0, scale_major=False)
    order = list(range(len(ratios)))
    order.insert(1, len(ratios))  # scale sqrt(max/min) ratio 1 goes second
    return xyxy[order]


def _retinanet_base_xyxy(stride: int) -> np.ndarray:
    octave = np.array([2 ** (i / RETINANET_SCALES_PER_OCTAVE)
                       for i in range(RETINANET_SCALES_PER_OCTAVE)])
    scales = octave * RETINANET_OCTAVE_BASE_SCALE
    return _base_anchors(stride, scales, RETINANET_RATIOS, 0.0, scale_major=True)


def ssd_base_anchors(level: SSDLevel) -> np.ndarray:
    """The anchors of one location of an SSD level, ``[A, 4]`` (ymin, xmin, ymax, xmax),
    for the first cell (A = 2 + 2 * len(ratios), 6 here)."""
    return _ssd_base_xyxy(level)[:, [1, 0, 3, 2]]


def retinanet_base_anchors(stride: int) -> np.ndarray:
    """The 9 anchors of one RetinaNet location at ``stride``, ``[9, 4]`` (ymin, xmin,
    ymax, xmax), centered on the origin."""
    return _retinanet_base_xyxy(stride)[:, [1, 0, 3, 2]]


def _sizes(feature_sizes, count):
    sizes = [(s, s) if isinstance(s, (int, np.integer)) else tuple(s) for s in feature_sizes]
    if len(sizes) != count:
        raise ValueError(f"feature_sizes must give {count} levels. "
                         f"Received: feature_sizes={feature_sizes!r}.")
    return sizes


def ssd_anchors(feature_sizes: Sequence = SSD_FEATURE_SIZES) -> np.ndarray:
    """All SSDLite anchors, ``[N, 4]`` float32 (ymin, xmin, ymax, xmax) in pixels.

    Args:
        feature_sizes: the 6 maps' sizes, ``n`` or ``(height, width)`` each
            (20, 10, 5, 3, 2, 1 at 320x320: 3,234 anchors).
    """
    sizes = _sizes(feature_sizes, len(SSD_LEVELS))
    return np.concatenate([_grid(_ssd_base_xyxy(level), level.stride, size)
                           for level, size in zip(SSD_LEVELS, sizes, strict=True)])


def retinanet_anchors(feature_sizes: Sequence) -> np.ndarray:
    """All RetinaNet anchors, ``[N, 4]`` float32 (ymin, xmin, ymax, xmax) in pixels.

    Args:
        feature_sizes: the maps of P3 ... P7, ``n`` or ``(height, width)`` each.
    """
    sizes = _sizes(feature_sizes, len(RETINANET_STRIDES))
    return np.concatenate([_grid(_retinanet_base_xyxy(s), s, size)
                           for s, size in zip(RETINANET_STRIDES, sizes, strict=True)])


def num_anchors_per_location(kind: str) -> int:
    """6 for "ssd", 9 for "retinanet"."""
    if kind == "ssd":
        return 2 + 2 * len(SSD_LEVELS[0].ratios)
    if kind == "retinanet":
        return len(RETINANET_RATIOS) * RETINANET_SCALES_PER_OCTAVE
    raise ValueError(f'kind must be "ssd" or "retinanet". Received: kind={kind!r}.')


def to_center_normalized(anchors: np.ndarray, image_size) -> np.ndarray:
    """``(ymin, xmin, ymax, xmax)`` pixels -> ``(yc, xc, h, w)`` divided by the image's
    ``(height, width)``: the anchor input of ``TFLite_Detection_PostProcess`` and
    MediaPipe's ``FixedAnchorsSchema``."""
    height, width = (image_size, image_size) if np.isscalar(image_size) else image_size[:2]
    a = np.asarray(anchors, np.float64)
    h, w = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    out = np.stack([a[:, 0] + h / 2, a[:, 1] + w / 2, h, w], axis=-1)
    return (out / np.array([height, width, height, width])).astype(np.float32)


def feature_sizes(model) -> list[tuple[int, int]]:
    """The ``(height, width)`` of the maps a keras_mobile detector predicts on, in
    anchor order (read from its head layers, so they are what the model produces)."""
    names = {layer.name for layer in model.layers}
    if "head1_box_conv" in names:  # SSDLite: one head per level
        count = sum(1 for n in names if n.startswith("head") and n.endswith("_box_conv"))
        convs = [model.get_layer(f"head{i}_box_conv") for i in range(1, count + 1)]
        return [tuple(conv.output.shape[1:3]) for conv in convs]
    if "fpn3_output_conv" in names:  # RetinaNet: P3-P5 outputs, then P6, P7
        layers = [f"fpn{level}_output_conv" for level in (3, 4, 5)] + ["fpn6_conv", "fpn7_conv"]
        return [tuple(model.get_layer(n).output.shape[1:3]) for n in layers]
    raise ValueError("model must be a keras_mobile.detection SSDLite or RetinaNet. "
                     f"Received: model={model.name!r}.")


def anchors_for(model) -> np.ndarray:
    """The anchors of a keras_mobile detector, ``[N, 4]`` (ymin, xmin, ymax, xmax) pixels,
    in the order of its ``box_encodings`` / ``class_logits`` rows."""
    sizes = feature_sizes(model)
    if "head1_box_conv" in {layer.name for layer in model.layers}:
        return ssd_anchors(sizes)
    return retinanet_anchors(sizes)
