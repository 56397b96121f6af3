"""Losses of SSDLite and RetinaNet on the targets of :mod:`.targets`.

Reference: mmdet 2.x ``SSDHead.loss_single`` and ``RetinaHead`` (``AnchorHead.loss``
with ``FocalLoss`` and ``L1Loss``), as the EMO configs set them (``specs/dense.md`` §1):

* :func:`ssd_losses`: softmax cross-entropy over ``C + 1`` classes (background in
  column 0) on the positives and, per image, the ``3 x positives`` negatives of
  highest loss (hard-negative mining; an image without positives mines none, as
  mmdet), plus smooth-L1 (beta 1) summed over the 4 coordinates of the positives;
* :func:`retinanet_losses`: sigmoid focal loss (gamma 2, alpha 0.25) over the ``C``
  classes of every anchor that is not ignored, plus L1 on the positives.

Both return per-image sums ``(cls [B], box [B], positives [B])``; mmdet divides
the batch's sums by the batch's positives (``avg_factor=num_total_pos``), which
:func:`normalize` does per image so the sum over the batch is mmdet's loss.
"""

from __future__ import annotations

import tensorflow as tf


def _positives(cls_targets):
    cls_targets = tf.cast(cls_targets, tf.int32)
    return cls_targets, cls_targets > 0


def smooth_l1(diff, beta: float = 1.0):
    """mmdet's ``smooth_l1_loss``: ``0.5 x^2 / beta`` under ``beta``, ``|x| - beta / 2`` above."""
    diff = tf.abs(diff)
    return tf.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


def ssd_losses(cls_targets, box_targets, class_logits, box_encodings, *,
               neg_pos_ratio: float = 3.0, beta: float = 1.0):
    """SSD's per-image loss sums.

    Args:
        cls_targets: ``[B, N]`` (0 background, ``1 + class``, -1 ignored; floats
            holding those integers are fine).
        box_targets: ``[B, N, 4]``.
        class_logits: ``[B, N, C + 1]`` softmax logits, background in column 0.
        box_encodings: ``[B, N, 4]``.
        neg_pos_ratio: negatives kept per positive (3).
        beta: smooth-L1's beta (1.0).

    Returns:
        ``(cls_sum [B], box_sum [B], num_positives [B])`` float32.
    """
    cls_targets, positive = _positives(cls_targets)
    negative = tf.equal(cls_targets, 0)
    logits = tf.cast(class_logits, tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.maximum(cls_targets, 0), logits=logits)  # [B, N]
    num_pos = tf.reduce_sum(tf.cast(positive, tf.int32), axis=1)
    num_neg = tf.minimum(tf.cast(tf.cast(num_pos, tf.float32) * neg_pos_ratio, tf.int32),
                         tf.reduce_sum(tf.cast(negative, tf.int32), axis=1))
    # The rank of every negative by loss, highest first; the top num_neg are kept.
    neg_loss = tf.where(negative, tf.stop_gradient(ce), -1.0)
    order = tf.argsort(neg_loss, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)
    hard = negative & (rank < num_neg[:, None])
    mined = tf.cast(positive | hard, tf.float32)
    cls_sum = tf.reduce_sum(ce * mined, axis=1)
    box = tf.reduce_sum(smooth_l1(tf.cast(box_encodings, tf.float32) - box_targets, beta), -1)
    box_sum = tf.reduce_sum(box * tf.cast(positive, tf.float32), axis=1)
    return cls_sum, box_sum, tf.cast(num_pos, tf.float32)


def focal_loss(targets, logits, gamma: float = 2.0, alpha: float = 0.25):
    """mmdet's ``sigmoid_focal_loss`` per element (``targets`` one-hot floats)."""
    p = tf.sigmoid(logits)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * tf.pow(1 - p_t, gamma) * ce


def retinanet_losses(cls_targets, box_targets, class_logits, box_encodings, *,
                     gamma: float = 2.0, alpha: float = 0.25):
    """RetinaNet's per-image loss sums: focal loss over the anchors not ignored, L1 on
    the positives (``class_logits [B, N, C]`` sigmoid logits; otherwise as
    :func:`ssd_losses`)."""
    cls_targets, positive = _positives(cls_targets)
    logits = tf.cast(class_logits, tf.float32)
    num_classes = tf.shape(logits)[-1]
    onehot = tf.one_hot(tf.maximum(cls_targets, 0) - 1, num_classes)  # background: all 0
    focal = tf.reduce_sum(focal_loss(onehot, logits, gamma, alpha), -1)
    cls_sum = tf.reduce_sum(focal * tf.cast(cls_targets >= 0, tf.float32), axis=1)
    box = tf.reduce_sum(tf.abs(tf.cast(box_encodings, tf.float32) - box_targets), -1)
    box_sum = tf.reduce_sum(box * tf.cast(positive, tf.float32), axis=1)
    num_pos = tf.reduce_sum(tf.cast(positive, tf.float32), axis=1)
    return cls_sum, box_sum, num_pos


def normalize(per_image, num_pos):
    """Per-image loss sums scaled so that their sum over the batch is the batch's sum
    over its positives (mmdet's ``avg_factor``, at least 1): ``per_image * B / P``, B
    the batch and P its positives, so the mean over the batch is mmdet's loss."""
    batch = tf.cast(tf.shape(per_image)[0], tf.float32)
    return per_image * batch / tf.maximum(tf.reduce_sum(num_pos), 1.0)
