"""Training SSDLite / RetinaNet through the shared engine (:mod:`keras_mobile.training.engine`).

* :class:`Detection`: the engine's :class:`~keras_mobile.training.engine.Task` for a
  detector: its input pipeline (images and the encoded targets of :mod:`.targets`,
  matched in ``tf.data``, per image, so the model graph stays convolutions only), the
  loss of :mod:`.losses` and the loss parts as metrics;
* :func:`train`: the engine's prepare -> build -> restore -> fit with a detector model.

The engine's pipeline contract is kept: batches of ``(images float32 [0, 255],
labels, weights)``, here ``labels = {"cls_targets": [B, N], "box_targets": [B, N, 4]}``;
training shuffles with ``seed`` and ``epoch``, augments every element from a seed fixed
by its position (:mod:`.augment`, SSD's recipe), keeps whole batches and skips
``skip_steps`` on resume; evaluation reads every element once, in order, padding the
last batch with weight-0 images.

Best weights (``Task.monitor``): ``neg_loss``, the negative validation loss (the
engine keeps the highest metric). It is exact, cheap and computed in the engine's
validation pass; COCO AP needs NMS and pycocotools outside the graph, so it is
measured after training (:func:`keras_mobile.detection.evaluation.evaluate`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_mobile.data.datasets import batch_order, batched, pipeline_share
from keras_mobile.detection import anchors as anchors_lib
from keras_mobile.detection import augment, losses, targets
from keras_mobile.training import engine

KINDS = ("ssd", "retinanet")


def detector_kind(model) -> str:
    """"ssd" for an :func:`~keras_mobile.detection.SSDLite`, "retinanet" for a
    :func:`~keras_mobile.detection.RetinaNet` (read from its layers)."""
    names = {layer.name for layer in model.layers}
    if "head1_box_conv" in names:
        return "ssd"
    if "fpn3_output_conv" in names:
        return "retinanet"
    raise ValueError("model must be a keras_mobile.detection SSDLite or RetinaNet. "
                     f"Received: model={model.name!r}.")


def _seed_pair(seed: int, epoch: int, index):
    """An element's augmentation seed (as :mod:`keras_mobile.data.datasets`)."""
    return tf.stack([tf.cast(seed, tf.int64) * 1000003 + epoch, tf.cast(index, tf.int64)])


def _objects(info, objects, ignored: bool):
    """``(boxes [M, 4] float32 normalized, labels [M] int64)`` of an example's objects
    without (``ignored=False``) or only (True) those flagged ``info.ignored_flag``:
    COCO's crowds, VOC's difficult objects, which mmdet ignores in training and
    COCO evaluation counts as iscrowd."""
    boxes = tf.cast(objects["bbox"], tf.float32)
    labels = tf.cast(objects["label"], tf.int64)
    flag = info.ignored_flag
    flagged = tf.cast(objects[flag], tf.bool) if flag else tf.zeros_like(labels, tf.bool)
    keep = tf.equal(flagged, ignored)
    return tf.boolean_mask(boxes, keep), tf.boolean_mask(labels, keep)


def _elements(info, split: str, training: bool, seed: int, epoch: int) -> tf.data.Dataset:
    """``(encoded image, boxes [M, 4] normalized, labels [M] int64, weight)`` of a split,
    its ignored objects left out (:func:`_objects`)."""
    info.check_task("detection")  # a classification dataset: one line, not tfds' KeyError
    ds = info.builder.as_dataset(
        split=split, shuffle_files=training,
        decoders={"image": tfds.decode.SkipDecoding(),
                  **({"mask": tfds.decode.SkipDecoding()}
                     if "mask" in info.builder.info.features else {})},
        read_config=tfds.ReadConfig(shuffle_seed=seed + epoch, try_autocache=False))
    return ds.map(lambda ex: (ex["image"], *_objects(info, ex["objects"], False), 1.0))


def ignored_objects(info, split: str) -> tf.data.Dataset | None:
    """Per example of ``split``, in :func:`evaluation_batches`' order, its ignored
    objects ``(boxes [K, 4] normalized, labels [K])`` (:func:`_objects`); None for a
    dataset without an ignored flag. Reads the objects only."""
    if info.ignored_flag is None:
        return None
    ds = info.builder.as_dataset(
        split=split, shuffle_files=False,
        decoders=tfds.decode.PartialDecoding({"objects": ["bbox", "label", info.ignored_flag]}),
        read_config=tfds.ReadConfig(try_autocache=False))
    return ds.map(lambda ex: _objects(info, ex["objects"], True))


def _padding():
    """A weight-0 element without objects (the padding of an evaluation's last batch)."""
    return tf.data.Dataset.from_tensors((tf.io.encode_png(tf.zeros([1, 1, 3], tf.uint8)),
                                         tf.zeros([0, 4], tf.float32),
                                         tf.zeros([0], tf.int64), 0.0))


def _decode(encoded):
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


class Detection(engine.Task):
    """Loss, metrics and input pipeline of SSDLite (``kind="ssd"``) or RetinaNet.

    Args:
        anchors: ``[N, 4]`` (ymin, xmin, ymax, xmax) pixels of the model's input
            (:func:`keras_mobile.detection.anchors_for`).
        kind: "ssd" (softmax, hard-negative mining, smooth-L1, SSD matching and
            augmentation) or "retinanet" (focal loss, L1, RetinaNet matching, flip
            only).
        matching: the assigner's settings (default: the kind's).
        augment: SSD's augmentation in training (False: the horizontal flip only, as
            RetinaNet's config always does).
        min_size: ground-truth boxes with a side under this many input pixels (after
            clipping) are dropped.
    """

    metrics = ("neg_loss", "cls_loss", "box_loss")
    monitor = "neg_loss"
    dataset_task = "detection"

    def __init__(self, anchors, kind: str = "ssd", *, matching: targets.Matching | None = None,
                 augment: bool = True, min_size: float = 1.0):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}. Received: kind={kind!r}.")
        self.anchors = tf.constant(anchors, tf.float32)
        self.kind = kind
        self.matching = matching or (targets.SSD_MATCHING if kind == "ssd"
                                     else targets.RETINANET_MATCHING)
        self.augment = augment
        self.min_size = min_size

    @classmethod
    def for_model(cls, model, **kwargs) -> Detection:
        """The task of a keras_mobile detector: its kind and anchors."""
        return cls(anchors_lib.anchors_for(model), detector_kind(model), **kwargs)

    # --- loss and metrics -------------------------------------------------------------

    def loss_parts(self, labels, outputs):
        """``(cls [B], box [B])``: per-image losses, normalized by the batch's positives."""
        fn = losses.ssd_losses if self.kind == "ssd" else losses.retinanet_losses
        cls, box, num_pos = fn(labels["cls_targets"], labels["box_targets"],
                               outputs["class_logits"], outputs["box_encodings"])
        return losses.normalize(cls, num_pos), losses.normalize(box, num_pos)

    def loss(self, labels, outputs):
        cls, box = self.loss_parts(labels, outputs)
        return cls + box

    def metric_sums(self, labels, outputs, weights):
        cls, box = self.loss_parts(labels, outputs)
        return (-tf.reduce_sum((cls + box) * weights), tf.reduce_sum(cls * weights),
                tf.reduce_sum(box * weights))

    # --- quantization-aware training -----------------------------------------------------

    def quantize(self, model):
        """The detector's quantization-aware twin (:func:`~.quantize.quantize_detector`)."""
        from keras_mobile.detection.quantize import quantize_detector

        return quantize_detector(model)

    def calibration_images(self, info, split: str, image_size: int, count: int):
        """The first ``count`` images of ``split``, resized as evaluation reads them."""
        return evaluation_examples(info, split, image_size, count)[0]

    # --- data --------------------------------------------------------------------------

    def encode_targets(self, boxes, labels, image_size: int):
        """Encoded targets of one image (``boxes`` normalized, ``labels`` 0-based)."""
        size = float(image_size)
        return targets.assign(self.anchors, boxes * size, labels, (size, size),
                              self.matching, self.min_size)

    def transform(self, image, boxes, labels, image_size: int, seed=None):
        """One image resized to the model input (augmented with a ``seed``): ``(image
        float32 [S, S, 3], boxes normalized, labels)``."""
        size = (image_size, image_size)
        if seed is None:
            return augment.crop_and_resize(image, tf.constant([0.0, 0.0, 1.0, 1.0]), size), \
                boxes, labels
        if self.kind == "ssd" and self.augment:
            return augment.ssd_augment(image, boxes, labels, seed, size)
        flip = tf.random.stateless_uniform([], seed) < 0.5
        return augment.apply_window(image, boxes, labels, tf.constant([0.0, 0.0, 1.0, 1.0]),
                                    flip, size)

    def input_pipeline(self, info, split, *, training: bool, image_size: int,
                       global_batch_size: int, replica_batch_size: int | None = None,
                       pipeline_id: int = 0, num_pipelines: int = 1, seed: int = 0,
                       epoch: int = 0, skip_steps: int = 0, randaugment=None,
                       shuffle_buffer: int = 10_000, deterministic: bool = True
                       ) -> tf.data.Dataset:
        """Batches of ``(images, {"cls_targets", "box_targets"}, weights)`` for one input
        pipeline (the arguments of :func:`keras_mobile.data.input_pipeline`)."""
        if randaugment is not None:
            raise ValueError("randaugment does not apply to detection (it would move the "
                             "objects off their boxes); use recipe randaugment='none'.")
        share = pipeline_share(global_batch_size, num_pipelines)
        total = info.num_examples(split)
        ds = _elements(info, split, training, seed, epoch)
        if training:
            ds = ds.shuffle(min(shuffle_buffer, total), seed=seed + epoch,
                            reshuffle_each_iteration=False)
        ds = batch_order(ds, _padding(), total=total, training=training,
                         global_batch_size=global_batch_size, pipeline_id=pipeline_id,
                         num_pipelines=num_pipelines, skip_steps=skip_steps)

        def prepare(index, element):
            encoded, boxes, labels, weight = element
            element_seed = _seed_pair(seed, epoch, index) if training else None
            image, boxes, labels = self.transform(_decode(encoded), boxes, labels, image_size,
                                                  element_seed)
            image = tf.ensure_shape(image, [image_size, image_size, 3])
            target = self.encode_targets(boxes, labels, image_size)
            return image, target, tf.cast(weight, tf.float32)

        return batched(ds, prepare, replica_batch_size or share, deterministic)


def evaluation_batches(info, split: str, image_size: int, batch_size: int = 32,
                       max_boxes: int | None = None) -> tf.data.Dataset:
    """Batches of a split as evaluation reads them: ``(images float32 [B, S, S, 3],
    boxes [B, M, 4] normalized, labels [B, M] int64 (-1: padding), original (height,
    width) [B, 2])``, every example once, in order."""
    def prepare(encoded, boxes, labels, _):
        image = _decode(encoded)
        resized = augment.crop_and_resize(image, tf.constant([0.0, 0.0, 1.0, 1.0]),
                                          (image_size, image_size))
        return resized, boxes, labels, tf.shape(image)[:2]

    ds = _elements(info, split, False, 0, 0).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    shapes = ([image_size, image_size, 3], [max_boxes, 4], [max_boxes], [2])
    return ds.padded_batch(batch_size, shapes, (0.0, 0.0, tf.constant(-1, tf.int64), 0)
                           ).prefetch(tf.data.AUTOTUNE)


def evaluation_examples(info, split: str, image_size: int, count: int):
    """The first ``count`` examples of ``split`` as :func:`evaluation_batches` reads them:
    images (float32 [0, 255] at the input size) and, per image, its ground truth
    ``(boxes normalized, labels)``."""
    images, truth = [], []
    for batch, boxes, labels, _ in evaluation_batches(info, split, image_size).take(
            -(-count // 32)):
        images.append(batch.numpy())
        truth += [(b[c >= 0], c[c >= 0]) for b, c in zip(boxes.numpy(), labels.numpy(),
                                                         strict=True)]
    return np.concatenate(images)[:count], truth[:count]


def train(config: engine.TrainConfig, model, init_weights: list | None = None, *,
          task: Detection | None = None) -> engine.TrainResult:
    """Trains (or resumes) the detector ``model`` on ``config.dataset`` (a detection
    dataset: ``objects/bbox``, ``objects/label``) through the engine: prepare -> build
    (with ``model``) -> restore -> fit.

    ``config.model`` is the backbone's registered name and ``config.model_kwargs``
    ``{"detector": "SSDLite" | "RetinaNet", "backbone_kwargs": {...}}``: ``run.json``
    records them, and :func:`detector_from_record` rebuilds the model from them.
    ``config.image_size`` is the model's input side (None: taken from the model).
    ``config.qat``: fine-tune the quantization-aware twin of ``model``
    (:func:`~keras_mobile.detection.quantize_detector`) from ``init_weights`` (the
    float run's :attr:`~keras_mobile.training.engine.TrainResult.weights`).
    ``task``: default :meth:`Detection.for_model`.
    """
    height, width = model.inputs[0].shape[1:3]
    if height != width:
        raise ValueError(f"model must take square images. Received: input {height}x{width}.")
    if config.image_size not in (None, height):
        raise ValueError(f"config.image_size must be None or the model's input side {height}. "
                         f"Received: image_size={config.image_size}.")
    if config.qat and init_weights is None:
        raise ValueError("qat=True fine-tunes a trained float detector: pass its init_weights.")
    config = dataclasses.replace(config, image_size=height)
    task = task or Detection.for_model(model)
    run = engine.prepare(config)
    run.info.check_task(task.dataset_task)
    classes = model.output["class_logits"].shape[-1] - (1 if task.kind == "ssd" else 0)
    if classes != run.info.num_classes:
        raise ValueError(f"the model predicts {classes} classes, dataset {config.dataset!r} "
                         f"has {run.info.num_classes}.")
    with engine.owning(run):
        trainable = engine.build(run, init_weights, model=model, task=task)
        checkpoints = engine.restore(run, trainable, task)
        return engine.fit(run, trainable, checkpoints, task)


DETECTORS = ("SSDLite", "RetinaNet")
HEADS = DETECTORS  # what scripts/train.py --task=detection takes as --model


def is_detection_record(record: dict) -> bool:
    """Whether a run's ``run.json`` record is a detector's (:func:`train`)."""
    return "detector" in record.get("model_kwargs", {})


def detector_from_record(record: dict):
    """The detector of a run (its ``run.json`` record), freshly initialized: the
    registered backbone ``record["model"]`` with ``model_kwargs["backbone_kwargs"]``
    under ``model_kwargs["detector"]``, at the recorded image size and classes."""
    from keras_mobile import detection
    from keras_mobile.backbones import DETECTION_BACKBONE_KWARGS, head_from_record

    return head_from_record(record, "detector",
                            {name: getattr(detection, name) for name in DETECTORS},
                            DETECTION_BACKBONE_KWARGS)


model_from_record = detector_from_record  # the name scripts/train.py uses for every task


def trained_detector(result: engine.TrainResult):
    """:func:`keras_mobile.training.engine.trained_model` for a detector run: the
    :class:`~keras_mobile.detection.Detector` (or, for a QAT run, its
    :class:`~keras_mobile.detection.quantize.QuantizedDetector`) rebuilt outside any
    strategy, with the run's final weights."""
    from keras_mobile.backbones import trained_head

    return trained_head(result, detector_from_record,
                        "keras_mobile.detection.quantize:quantize_detector")


trained_model = trained_detector  # the name scripts/train.py uses for every task
