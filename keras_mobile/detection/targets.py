"""Training targets of SSDLite and RetinaNet: ground truth matched to anchors and encoded.

Reference: mmdet 2.x ``MaxIoUAssigner`` (``mmdet/core/bbox/assigners/max_iou_assigner.py``)
with the EMO configs' settings (``specs/dense.md`` §1):

* SSD (:data:`SSD_MATCHING`): ``pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.,
  gt_max_assign_all=False``: an anchor whose best IoU with a ground-truth box is
  >= 0.5 is that box's, the others are background; then every box takes its best
  anchor (a later box wins an anchor two boxes want);
* RetinaNet (:data:`RETINANET_MATCHING`): ``pos 0.5, neg 0.4, min_pos_iou=0,
  gt_max_assign_all=True``: anchors between 0.4 and 0.5 are ignored, and every
  anchor that ties a box's best IoU is forced positive.

Deviation from mmdet: a box whose best IoU is 0 (it overlaps no anchor) forces no
anchor, where mmdet's ``>= min_pos_iou`` with ``min_pos_iou=0`` hands it anchor 0.

Everything is TensorFlow ops over one image, for ``tf.data`` (the model graph
stays convolutions only): :func:`assign` takes ground truth in pixels of the
model's input, padded or not (a label < 0 marks padding). Boxes are clipped to the
image, and boxes left with a side under ``min_size`` pixels (zero area, or wholly
outside the image) are dropped; an image without boxes gives all-background targets.

Targets: ``cls_targets [N]`` int32, 0 background, ``1 + class`` for a positive, -1
ignored; ``box_targets [N, 4]`` the (ty, tx, th, tw) encoding
(:mod:`.box_coder`) of the matched box on positives, 0 elsewhere.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from keras_mobile.detection import box_coder


@dataclasses.dataclass(frozen=True)
class Matching:
    """``MaxIoUAssigner``'s settings and the box coder's stds."""

    pos_iou: float = 0.5
    neg_iou: float = 0.5
    min_pos_iou: float = 0.0
    gt_max_assign_all: bool = False
    stds: tuple = box_coder.SSD_STDS


SSD_MATCHING = Matching(0.5, 0.5, 0.0, False, box_coder.SSD_STDS)
RETINANET_MATCHING = Matching(0.5, 0.4, 0.0, True, box_coder.RETINANET_STDS)


def iou(boxes_a, boxes_b):
    """IoU of every pair, ``[N, 4] x [M, 4] -> [N, M]`` ((ymin, xmin, ymax, xmax) each);
    0 where the union is empty."""
    a = tf.cast(boxes_a, tf.float32)[:, None, :]
    b = tf.cast(boxes_b, tf.float32)[None, :, :]
    h = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    w = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = h * w
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return tf.math.divide_no_nan(inter, area_a + area_b - inter)


def clean_boxes(boxes, labels, image_size, min_size: float = 1.0):
    """Ground truth of one image clipped to ``image_size`` ((height, width) pixels) and
    its validity: ``(boxes [M, 4], valid [M] bool)``; invalid: padding (label < 0) or a
    side under ``min_size`` pixels after clipping."""
    height, width = image_size
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    limit = tf.constant([height, width, height, width], tf.float32)
    boxes = tf.clip_by_value(boxes, 0.0, limit)
    valid = (tf.reshape(labels, [-1]) >= 0) & (boxes[:, 2] - boxes[:, 0] >= min_size) & (
        boxes[:, 3] - boxes[:, 1] >= min_size)
    return boxes, valid


def assign(anchors, boxes, labels, image_size, matching: Matching = SSD_MATCHING,
           min_size: float = 1.0):
    """Targets of one image.

    Args:
        anchors: ``[N, 4]`` (ymin, xmin, ymax, xmax) pixels of the model's input.
        boxes: ``[M, 4]`` ground truth, same unit (M may be 0, may hold padding).
        labels: ``[M]`` 0-based classes, < 0 for padding.
        image_size: the input's ``(height, width)``, for clipping.
        matching: :data:`SSD_MATCHING` or :data:`RETINANET_MATCHING` (or any
            :class:`Matching`).
        min_size: boxes with a side under this many pixels are dropped.

    Returns:
        ``{"cls_targets": [N] int32, "box_targets": [N, 4] float32}``.
    """
    anchors = tf.cast(anchors, tf.float32)
    boxes, valid = clean_boxes(boxes, labels, image_size, min_size)
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    num_gt = tf.shape(boxes)[0]
    # Padding and dropped boxes: IoU -1, never matched and below every threshold.
    overlaps = tf.where(valid[None, :], iou(anchors, boxes), -1.0)  # [N, M]
    num_anchors = tf.shape(anchors)[0]
    overlaps = tf.concat([overlaps, tf.fill([num_anchors, 1], -1.0)], axis=1)  # M = 0 works
    best_iou = tf.reduce_max(overlaps, axis=1)
    best_gt = tf.argmax(overlaps, axis=1, output_type=tf.int32)
    # -1 ignored, 0 background, k + 1 matched to box k.
    matched = tf.where(best_iou >= matching.pos_iou, best_gt + 1,
                       tf.where(best_iou < matching.neg_iou, 0, -1))
    # Each box's best anchor(s), over the real boxes only.
    overlaps = overlaps[:, :-1]
    gt_best = tf.reduce_max(overlaps, axis=0)  # [M]
    if matching.gt_max_assign_all:
        forced = tf.equal(overlaps, gt_best[None, :])
    else:  # the first anchor of the maximum, as torch's argmax
        first = tf.argmax(overlaps, axis=0, output_type=tf.int32)
        forced = tf.equal(tf.range(num_anchors)[:, None], first[None, :])
    forced &= (valid & (gt_best >= matching.min_pos_iou) & (gt_best > 0))[None, :]
    # mmdet loops over the boxes in order: the last box forcing an anchor keeps it.
    last = tf.reduce_max(tf.where(forced, tf.range(num_gt)[None, :] + 1, 0), axis=1)
    matched = tf.where(last > 0, last, matched)
    positive = matched > 0
    index = tf.maximum(matched - 1, 0)
    matched_boxes = tf.gather(tf.concat([boxes, tf.zeros([1, 4])], 0), index)
    matched_labels = tf.gather(tf.concat([labels, tf.zeros([1], tf.int32)], 0), index)
    cls_targets = tf.where(positive, matched_labels + 1, tf.minimum(matched, 0))
    safe = tf.where(positive[:, None], matched_boxes, anchors)  # no log(0) off the positives
    encoded = box_coder.encode(safe, anchors, matching.stds)
    box_targets = tf.where(positive[:, None], tf.cast(encoded, tf.float32), 0.0)
    return {"cls_targets": tf.cast(cls_targets, tf.int32), "box_targets": box_targets}
