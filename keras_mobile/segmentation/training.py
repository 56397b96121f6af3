"""Training DeepLabV3 / PSPNet / LR-ASPP through the shared engine
(:mod:`keras_mobile.training.engine`).

* :class:`Segmentation`: the engine's :class:`~keras_mobile.training.engine.Task` for a
  segmenter: mmseg's loss (per-pixel softmax cross-entropy, ignored pixels (255)
  contributing 0, averaged over every pixel as mmseg 0.x does; the auxiliary head's
  loss with weight 0.4), pixel accuracy while training, and mean IoU and pixel
  accuracy on the validation split (``best.weights.h5`` keeps the best mIoU);
* :func:`train`: the engine's prepare -> build -> restore -> fit with a segmenter;
* :func:`segmenter_from_record`, :func:`trained_segmenter`: the model of a run, rebuilt
  from its ``run.json``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from keras_mobile.segmentation import augment, data
from keras_mobile.segmentation.models import AUX_LOSS_WEIGHT, IGNORE_LABEL
from keras_mobile.training import engine

SEGMENTERS = ("DeepLabV3", "PSPNet", "LRASPP")
HEADS = SEGMENTERS  # what scripts/train.py --task=segmentation takes as --model


def confusion_sums(labels, logits, num_classes: int, weights=None):
    """``(intersection [C], union [C], correct, valid)`` of a batch: per class the pixels
    predicted and labelled as it, and predicted or labelled as it; pixels labelled 255
    (or of a weight-0 example) count nowhere."""
    labels = tf.cast(labels, tf.int32)
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    valid = tf.not_equal(labels, IGNORE_LABEL)
    if weights is not None:
        valid &= tf.cast(weights, tf.bool)[:, None, None]
    labels = tf.boolean_mask(labels, valid)
    predicted = tf.boolean_mask(predicted, valid)
    hits = tf.equal(labels, predicted)
    intersection = tf.math.bincount(tf.boolean_mask(labels, hits), minlength=num_classes,
                                    maxlength=num_classes, dtype=tf.float32)
    labelled = tf.math.bincount(labels, minlength=num_classes, maxlength=num_classes,
                                dtype=tf.float32)
    predicted_count = tf.math.bincount(predicted, minlength=num_classes,
                                       maxlength=num_classes, dtype=tf.float32)
    union = labelled + predicted_count - intersection
    return (intersection, union, tf.reduce_sum(intersection),
            tf.cast(tf.size(labels), tf.float32))


def segmentation_metrics(intersection, union, correct, valid) -> dict:
    """mmseg's ``mIoU`` (mean over the classes present in labels or predictions) and
    ``aAcc`` (pixel accuracy) from summed :func:`confusion_sums`, as fractions."""
    intersection, union = np.asarray(intersection, np.float64), np.asarray(union, np.float64)
    present = union > 0
    iou = np.where(present, intersection / np.maximum(union, 1), np.nan)
    return {"miou": float(np.nanmean(iou)) if present.any() else 0.0,
            "pixel_accuracy": float(correct) / max(float(valid), 1.0),
            "iou": [None if np.isnan(v) else float(v) for v in iou]}


class Segmentation(engine.Task):
    """Loss, metrics and input pipeline of a segmenter with ``num_classes`` classes.

    Args:
        num_classes: the model's classes.
        aux_loss_weight: weight of ``aux_logits``' loss (mmseg's auxiliary FCN head: 0.4).
        ratio_range, cat_max_ratio: the training augmentation's random rescale range and
            crop rule (:func:`keras_mobile.segmentation.augment.train_augment`; mmseg's
            ADE20K recipe by default).
    """

    metrics = ("pixel_accuracy",)
    monitor = "miou"
    dataset_task = "segmentation"

    def __init__(self, num_classes: int, aux_loss_weight: float = AUX_LOSS_WEIGHT, *,
                 ratio_range: tuple[float, float] = augment.RATIO_RANGE,
                 cat_max_ratio: float | None = augment.CAT_MAX_RATIO):
        self.num_classes = int(num_classes)
        self.aux_loss_weight = float(aux_loss_weight)
        self.ratio_range = tuple(ratio_range)
        self.cat_max_ratio = cat_max_ratio

    @classmethod
    def for_model(cls, model, **kwargs) -> Segmentation:
        return cls(int(model.output["logits"].shape[-1]), **kwargs)

    # --- loss and metrics -------------------------------------------------------------

    @staticmethod
    def pixel_loss(labels, logits):
        """Per-image mean over all pixels of the cross-entropy (0 on ignored pixels)."""
        labels = tf.cast(labels, tf.int32)
        valid = tf.not_equal(labels, IGNORE_LABEL)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
            tf.where(valid, labels, 0), tf.cast(logits, tf.float32))
        return tf.reduce_mean(tf.where(valid, ce, 0.0), axis=[1, 2])

    def loss(self, labels, outputs):
        loss = self.pixel_loss(labels, outputs["logits"])
        if "aux_logits" in outputs and self.aux_loss_weight:
            loss += self.aux_loss_weight * self.pixel_loss(labels, outputs["aux_logits"])
        return loss

    def metric_sums(self, labels, outputs, weights):
        """Per image, its share of correctly labelled valid pixels; weighted sum."""
        labels = tf.cast(labels, tf.int32)
        valid = tf.cast(tf.not_equal(labels, IGNORE_LABEL), tf.float32)
        hits = tf.cast(tf.equal(tf.argmax(outputs["logits"], -1, output_type=tf.int32),
                                labels), tf.float32) * valid
        share = tf.reduce_sum(hits, [1, 2]) / tf.maximum(tf.reduce_sum(valid, [1, 2]), 1.0)
        return (tf.reduce_sum(share * weights),)

    def evaluation_sums(self, labels, outputs, weights):
        return confusion_sums(labels, outputs["logits"], self.num_classes, weights)

    def summarize(self, sums, count):
        metrics = segmentation_metrics(*sums)
        return {"miou": metrics["miou"], "pixel_accuracy": metrics["pixel_accuracy"]}

    # --- quantization-aware training -----------------------------------------------------

    def quantize(self, model):
        """The segmenter's quantization-aware twin (:func:`~.quantize.quantize_segmenter`)."""
        from keras_mobile.segmentation.quantize import quantize_segmenter

        return quantize_segmenter(model)

    def calibration_images(self, info, split: str, image_size: int, count: int):
        return data.evaluation_examples(info, split, image_size, count)[0]

    # --- data --------------------------------------------------------------------------

    def input_pipeline(self, info, split, **kwargs) -> tf.data.Dataset:
        return data.input_pipeline(info, split, ratio_range=self.ratio_range,
                                   cat_max_ratio=self.cat_max_ratio, **kwargs)


def train(config: engine.TrainConfig, model, init_weights: list | None = None, *,
          task: Segmentation | None = None) -> engine.TrainResult:
    """Trains (or resumes) the segmenter ``model`` on ``config.dataset`` (a dataset with
    class masks) through the engine: prepare -> build (with ``model``) -> restore -> fit.

    ``config.model`` is the backbone's registered name and ``config.model_kwargs``
    ``{"segmenter": "DeepLabV3" | "PSPNet" | "LRASPP", "backbone_kwargs": {...},
    "segmenter_kwargs": {...}}``: ``run.json`` records them, and
    :func:`segmenter_from_record` rebuilds the model. ``config.image_size``: None or the
    model's input side. ``config.qat``: fine-tune the quantization-aware twin from
    ``init_weights`` (the float run's weights).
    """
    height, width = model.inputs[0].shape[1:3]
    if height != width:
        raise ValueError(f"model must take square images. Received: input {height}x{width}.")
    if config.image_size not in (None, height):
        raise ValueError(f"config.image_size must be None or the model's input side {height}. "
                         f"Received: image_size={config.image_size}.")
    if config.qat and init_weights is None:
        raise ValueError("qat=True fine-tunes a trained float segmenter: pass its "
                         "init_weights.")
    config = dataclasses.replace(config, image_size=height)
    task = task or Segmentation.for_model(model)
    run = engine.prepare(config, dataset_task="segmentation")
    run.info.check_task(task.dataset_task)
    if task.num_classes != run.info.num_classes:
        raise ValueError(f"the model predicts {task.num_classes} classes, dataset "
                         f"{config.dataset!r} has {run.info.num_classes} "
                         f"({', '.join(run.info.class_names[:8])}"
                         f"{', ...' if run.info.num_classes > 8 else ''}).")
    with engine.owning(run):
        trainable = engine.build(run, init_weights, model=model, task=task)
        checkpoints = engine.restore(run, trainable, task)
        return engine.fit(run, trainable, checkpoints, task)


def is_segmentation_record(record: dict) -> bool:
    """Whether a run's ``run.json`` record is a segmenter's (:func:`train`)."""
    return "segmenter" in record.get("model_kwargs", {})


def segmenter_from_record(record: dict):
    """The segmenter of a run (its ``run.json`` record), freshly initialized."""
    from keras_mobile import segmentation
    from keras_mobile.backbones import SEGMENTATION_BACKBONE_KWARGS, head_from_record

    return head_from_record(record, "segmenter",
                            {name: getattr(segmentation, name) for name in SEGMENTERS},
                            SEGMENTATION_BACKBONE_KWARGS,
                            **record.get("model_kwargs", {}).get("segmenter_kwargs", {}))


model_from_record = segmenter_from_record  # the name scripts/train.py uses for every task


def trained_segmenter(result: engine.TrainResult):
    """The :class:`~keras_mobile.segmentation.Segmenter` of a run (its QAT twin for a QAT
    run), rebuilt outside any strategy, with the run's final weights."""
    from keras_mobile.backbones import trained_head

    return trained_head(result, segmenter_from_record,
                        "keras_mobile.segmentation.quantize:quantize_segmenter")


trained_model = trained_segmenter  # the name scripts/train.py uses for every task
