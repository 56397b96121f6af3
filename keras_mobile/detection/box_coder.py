"""The ``DeltaXYWH`` box coder of mmdetection (``DeltaXYWHBBoxCoder``), in TFLite's layout.

Reference: mmdet 2.x ``mmdet/core/bbox/coder/delta_xywh_bbox_coder.py``
(``bbox2delta`` / ``delta2bbox``, ``target_means`` 0). An encoding is
``(ty, tx, th, tw) = ((y - ya) / ha, (x - xa) / wa, log(h / ha), log(w / wa)) / stds``
for a box of center ``(y, x)`` and size ``(h, w)`` on an anchor ``(ya, xa, ha, wa)``;
mmdet writes the same numbers in the order (x, y, w, h). This module uses the
order of ``TFLite_Detection_PostProcess`` (y, x, h, w), whose ``y_scale, x_scale,
h_scale, w_scale`` are ``1 / stds`` (:func:`tflite_scales`): SSDLite's stds
(0.1, 0.1, 0.2, 0.2) are scales 10, 10, 5, 5. Boxes and anchors are
``(ymin, xmin, ymax, xmax)``, in pixels or normalized (the same unit for both).

One implementation with ``keras.ops``: numpy arrays and tensors both go in, and
the result is a backend tensor (``np.asarray`` it for numpy). It is used outside
the model (target assignment, decoding before NMS), never as a layer.
"""

from __future__ import annotations

import math

from keras import ops

SSD_STDS = (0.1, 0.1, 0.2, 0.2)  # ssdlite_emo_*: target_stds (symmetric in x/y, w/h)
RETINANET_STDS = (1.0, 1.0, 1.0, 1.0)  # retinanet_emo_fpn.py: target_stds
# mmdet's delta2bbox clamps dh, dw (after the stds) to |log(16 / 1000)|.
MAX_RATIO = abs(math.log(16 / 1000))


def tflite_scales(stds=SSD_STDS) -> tuple[float, float, float, float]:
    """``(y_scale, x_scale, h_scale, w_scale)`` of ``TFLite_Detection_PostProcess``."""
    return tuple(1.0 / s for s in stds)


def _centers(boxes):
    boxes = ops.cast(boxes, "float32")
    ymin, xmin, ymax, xmax = (boxes[..., i] for i in range(4))
    # mmdet's order of operations: centers (min + max) * 0.5, sizes max - min.
    return (ymin + ymax) * 0.5, (xmin + xmax) * 0.5, ymax - ymin, xmax - xmin


def encode(boxes, anchors, stds=SSD_STDS):
    """Encode ``boxes`` on ``anchors`` (both ``[..., 4]`` ymin, xmin, ymax, xmax) as
    ``[..., 4]`` (ty, tx, th, tw) regression targets.

    Example:
        >>> np.asarray(encode([[0., 0., 20., 40.]], [[0., 0., 10., 10.]])).round(4)
        array([[ 5.    , 15.    ,  3.4657,  6.9315]], dtype=float32)

        ``ty = (10 - 5) / 10 / 0.1``, ``th = log(20 / 10) / 0.2``.
    """
    y, x, h, w = _centers(boxes)
    ya, xa, ha, wa = _centers(anchors)
    std = ops.convert_to_tensor(stds, "float32")
    deltas = ops.stack([(y - ya) / ha, (x - xa) / wa, ops.log(h / ha), ops.log(w / wa)], -1)
    return deltas / std


def decode(encodings, anchors, stds=SSD_STDS, max_ratio: float | None = MAX_RATIO):
    """Decode ``[..., 4]`` (ty, tx, th, tw) on ``anchors`` to ``[..., 4]`` (ymin, xmin,
    ymax, xmax) boxes: the inverse of :func:`encode`.

    ``max_ratio`` clamps th, tw (after the stds) to ``[-max_ratio, max_ratio]`` as mmdet
    does (``None``: no clamp, as ``TFLite_Detection_PostProcess``).
    """
    ya, xa, ha, wa = _centers(anchors)
    d = ops.cast(encodings, "float32") * ops.convert_to_tensor(stds, "float32")
    dy, dx, dh, dw = (d[..., i] for i in range(4))
    if max_ratio is not None:
        dh = ops.clip(dh, -max_ratio, max_ratio)
        dw = ops.clip(dw, -max_ratio, max_ratio)
    y, x = ya + dy * ha, xa + dx * wa
    h, w = ha * ops.exp(dh), wa * ops.exp(dw)
    return ops.stack([y - 0.5 * h, x - 0.5 * w, y + 0.5 * h, x + 0.5 * w], -1)
