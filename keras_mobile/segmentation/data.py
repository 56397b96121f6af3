"""The segmentation input pipeline: images and class-id masks of a segmentation dataset.

A dataset serves segmentation when its catalogue describes a class mask
(:class:`~keras_mobile.data.datasets.MaskSpec`, ``info.mask``): the embedded
``keras_mobile_shapes_detection`` (7 classes, background included), tfds'
``scene_parse150`` and mask folders (:mod:`keras_mobile.data.mask_folder`). The
stored mask becomes class ids by :func:`class_ids` (its channel, ``reduce_zero_label``,
the ignored value as 255).

:func:`input_pipeline` keeps the engine's contract (that of
:func:`keras_mobile.data.input_pipeline` and ``Detection.input_pipeline``): batches
of ``(images float32 [B, S, S, 3] in [0, 255], labels int32 [B, S, S] (class ids,
255 ignored), weights float32 [B])`` for one input pipeline. Training shuffles with
``seed`` and ``epoch``, augments every element from a seed fixed by its position
(:mod:`.augment`: mmseg's ADE20K recipe at ``S``), keeps whole batches and skips
``skip_steps`` on resume; evaluation reads every element once, in order, resized to
``S x S`` (image bilinear, mask nearest), the last global batch padded with weight-0
elements whose labels are all 255.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_mobile.data.datasets import (
    MaskSpec,
    _seed_pair,
    batch_order,
    batched,
    pipeline_share,
)
from keras_mobile.segmentation import augment

IGNORE_LABEL = augment.IGNORE_LABEL


def class_ids(mask, spec: MaskSpec):
    """The class ids ``int32 [H, W]`` of a stored mask ``[H, W, C]``: its channel
    ``spec.channel``; ``spec.ignore_label`` (and 0 with ``reduce_zero_label``, whose
    ``v`` is class ``v - 1``) and ids outside the classes become :data:`IGNORE_LABEL`."""
    ids = tf.cast(mask[..., spec.channel], tf.int32)
    ignored = tf.equal(ids, spec.ignore_label)
    if spec.reduce_zero_label:
        ignored |= tf.equal(ids, 0)
        ids = ids - 1
    ignored |= (ids < 0) | (ids >= spec.num_classes)
    return tf.where(ignored, IGNORE_LABEL, ids)


def _mask_channels(info) -> int:
    channels = info.builder.info.features[info.mask.feature].shape[-1]
    return int(channels) if channels else 0


def _elements(info, split: str, training: bool, seed: int, epoch: int) -> tf.data.Dataset:
    """``(encoded image, encoded mask, weight 1.0)`` of a split."""
    info.check_task("segmentation")  # another task's dataset: one line, not tfds' KeyError
    feature = info.mask.feature
    ds = info.builder.as_dataset(
        split=split, shuffle_files=training,
        decoders={"image": tfds.decode.SkipDecoding(), feature: tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=seed + epoch, try_autocache=False))
    return ds.map(lambda ex: (ex["image"], ex[feature], 1.0))


def _padding(channels: int) -> tf.data.Dataset:
    """A weight-0 element (the padding of an evaluation's last batch)."""
    return tf.data.Dataset.from_tensors((
        tf.io.encode_png(tf.zeros([1, 1, 3], tf.uint8)),
        tf.io.encode_png(tf.zeros([1, 1, channels or 1], tf.uint8)), 0.0))


def _decode(info, encoded, encoded_mask):
    """``(image uint8 [H, W, 3], class ids int32 [H, W])`` of an element."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    mask = tf.io.decode_png(encoded_mask, channels=_mask_channels(info))
    return image, class_ids(mask, info.mask)


def input_pipeline(info, split: str, *, training: bool, image_size: int,
                   global_batch_size: int, replica_batch_size: int | None = None,
                   pipeline_id: int = 0, num_pipelines: int = 1, seed: int = 0,
                   epoch: int = 0, skip_steps: int = 0, randaugment=None,
                   shuffle_buffer: int = 10_000, deterministic: bool = True,
                   ratio_range: tuple[float, float] = augment.RATIO_RANGE,
                   cat_max_ratio: float | None = augment.CAT_MAX_RATIO) -> tf.data.Dataset:
    """Batches of ``(images float32 [B, S, S, 3] in [0, 255], labels int32 [B, S, S],
    weights float32 [B])`` for one input pipeline: its ``global_batch_size /
    num_pipelines`` share of every global batch, in batches of ``replica_batch_size``
    (default: the whole share). The arguments are those of
    :func:`keras_mobile.data.input_pipeline`; ``randaugment`` is refused;
    ``ratio_range`` and ``cat_max_ratio``: the training augmentation's
    (:func:`.augment.train_augment`, mmseg's by default)."""
    if randaugment is not None:
        raise ValueError("randaugment does not apply to segmentation (its geometric ops "
                         "would move the image off its mask); use recipe randaugment='none'.")
    share = pipeline_share(global_batch_size, num_pipelines)
    ds = _elements(info, split, training, seed, epoch)  # check_task first
    total = info.num_examples(split)  # a SplitError naming the split, not tfds' error
    if training:
        ds = ds.shuffle(max(min(shuffle_buffer, total), 1), seed=seed + epoch,
                        reshuffle_each_iteration=False)
    ds = batch_order(ds, _padding(_mask_channels(info)), total=total, training=training,
                     global_batch_size=global_batch_size, pipeline_id=pipeline_id,
                     num_pipelines=num_pipelines, skip_steps=skip_steps)

    def prepare(index, element):
        encoded, encoded_mask, weight = element
        image, label = _decode(info, encoded, encoded_mask)
        if training:
            image, label = augment.train_augment(image, label, _seed_pair(seed, epoch, index),
                                                 image_size, ratio_range=ratio_range,
                                                 cat_max_ratio=cat_max_ratio)
        else:
            image, label = augment.eval_resize(image, label, image_size)
        weight = tf.cast(weight, tf.float32)
        label = tf.where(weight > 0, label, IGNORE_LABEL)  # padding: nothing to score
        return image, label, weight

    return batched(ds, prepare, replica_batch_size or share, deterministic)


def evaluation_batches(info, split: str, image_size: int, batch_size: int = 32
                       ) -> tf.data.Dataset:
    """Batches ``(images float32 [B, S, S, 3] in [0, 255], labels int32 [B, S, S])`` of
    every example of ``split`` once, in order, as evaluation reads them (resized to
    ``S x S``: image bilinear, mask nearest); the last batch may be smaller."""
    def prepare(encoded, encoded_mask, _):
        return augment.eval_resize(*_decode(info, encoded, encoded_mask), image_size)

    ds = _elements(info, split, False, 0, 0).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def evaluation_examples(info, split: str, image_size: int, count: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` examples of ``split`` as :func:`evaluation_batches` reads them:
    ``(images float32 [n, S, S, 3], labels int32 [n, S, S])``, ``n = min(count, split
    size)``."""
    images, labels = [], []
    for batch_images, batch_labels in evaluation_batches(info, split, image_size).take(
            -(-count // 32)):
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
    if not images:
        return (np.zeros([0, image_size, image_size, 3], np.float32),
                np.zeros([0, image_size, image_size], np.int32))
    return np.concatenate(images)[:count], np.concatenate(labels)[:count]
