"""Datasets through tensorflow-datasets, offline first, and the input pipeline.

``dataset_info(name, data_dir)`` resolves a name (or a folder of class-named
image folders) to a prepared tfds builder and its splits, failing with the
command that would prepare it instead of tfds' network retries.
``input_pipeline(...)`` turns a split into batches for one input pipeline of a
tf.distribute strategy: every element's augmentation is seeded by its position,
so all workers agree on the global batch, and a resumed run skips exactly the
steps it already took.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf
import tensorflow_datasets as tfds

from keras_mobile.data import augment, shapes


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """What the trainer needs to know about a named dataset."""

    train_split: str
    eval_split: str
    image_size: int | None  # None: the model's default resolution
    eval_crop_pct: float = 0.875
    crop_scale: tuple[float, float] = (0.08, 1.0)
    manual: bool = False  # needs files placed by hand (imagenet2012)


DATASETS = {
    shapes.NAME: Catalogue("train", "validation", shapes.IMAGE_SIZE, eval_crop_pct=1.0,
                           crop_scale=(0.6, 1.0)),
    "imagenet2012": Catalogue("train", "validation", None, manual=True),
    "imagenette": Catalogue("train", "validation", None),
    "tf_flowers": Catalogue("train[:90%]", "train[90%:]", None),
    "cifar10": Catalogue("train", "test", 32, eval_crop_pct=1.0, crop_scale=(0.64, 1.0)),
    "cifar100": Catalogue("train", "test", 32, eval_crop_pct=1.0, crop_scale=(0.64, 1.0)),
}
FOLDER = Catalogue("train", "val", None)
DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")


class DatasetError(ValueError):
    """A dataset that cannot be read, with what to do about it."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    builder: tfds.core.DatasetBuilder
    catalogue: Catalogue
    num_classes: int
    class_names: tuple[str, ...]

    def num_examples(self, split: str) -> int:
        return int(self.builder.info.splits[split].num_examples)


def _data_dir(data_dir: str | None) -> str:
    return os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR") or DEFAULT_DATA_DIR)


def check_name(name: str) -> None:
    """Fails fast on a name that is neither a known dataset nor a folder."""
    if name not in DATASETS and not os.path.isdir(name):
        raise DatasetError(f"dataset must be one of {sorted(DATASETS)} or a folder of "
                           f"<split>/<class>/<image> files. Received: dataset={name!r}")


def dataset_info(name: str, data_dir: str | None = None, *, download: bool = False
                 ) -> DatasetInfo:
    """The prepared builder of ``name``; the embedded dataset is prepared on first
    use (it is generated, nothing is downloaded); others only with ``download``."""
    check_name(name)
    if name not in DATASETS:
        builder = tfds.folder_dataset.ImageFolder(name)
        splits = set(builder.info.splits)
        catalogue = FOLDER if "val" in splits else dataclasses.replace(
            FOLDER, eval_split="validation" if "validation" in splits else "test")
        missing = {catalogue.train_split, catalogue.eval_split} - splits
        if missing:
            raise DatasetError(f"folder dataset {name!r} needs the sub-folders train/ and val/ "
                               f"(or validation/, test/); found {sorted(splits) or 'none'}.")
    else:
        catalogue = DATASETS[name]
        data_dir = _data_dir(data_dir)
        builder = tfds.builder(name, data_dir=data_dir)
        if not builder.is_prepared():
            if name == shapes.NAME or download:
                kwargs = {}
                if catalogue.manual:
                    kwargs["download_config"] = tfds.download.DownloadConfig(
                        manual_dir=os.path.join(data_dir, "downloads", "manual"))
                builder.download_and_prepare(**kwargs)
            else:
                how = (f"place ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in "
                       f"{os.path.join(data_dir, 'downloads', 'manual')} and run"
                       if catalogue.manual else "run")
                raise DatasetError(
                    f"dataset {name!r} is not prepared in {data_dir}. To prepare it, {how}: "
                    f"tfds build {name} --data_dir={data_dir}  (or pass --download).")
    label = builder.info.features["label"]
    return DatasetInfo(name, builder, catalogue, label.num_classes, tuple(label.names))


def _seed_pair(seed: int, epoch: int, index):
    return tf.stack([tf.cast(seed, tf.int64) * 1000003 + epoch, tf.cast(index, tf.int64)])


def input_pipeline(info: DatasetInfo, split: str, *, training: bool, image_size: int,
                   global_batch_size: int, replica_batch_size: int | None = None,
                   pipeline_id: int = 0, num_pipelines: int = 1,
                   seed: int = 0, epoch: int = 0, skip_steps: int = 0,
                   crop_scale: tuple[float, float] | None = None,
                   randaugment: augment.RandAugment | None = None,
                   eval_crop_pct: float | None = None, shuffle_buffer: int = 10_000,
                   deterministic: bool = True) -> tf.data.Dataset:
    """Batches of ``(images float32 [0, 255], one-hot labels, weights)`` for one input
    pipeline: its ``global_batch_size / num_pipelines`` share of every global batch,
    in batches of ``replica_batch_size`` (default: the whole share), consecutive
    batches going to consecutive local replicas.

    Training: epoch ``epoch`` in a shuffled order fixed by ``seed`` and ``epoch``,
    whole batches only, the first ``skip_steps`` global steps skipped.
    Evaluation: every element once, in order; the last global batch is padded
    with weight-0 examples so shapes stay static (TPU) and counts stay exact.
    """
    if global_batch_size % num_pipelines:
        raise ValueError(f"global batch size {global_batch_size} is not divisible by the "
                         f"{num_pipelines} input pipelines")
    share = global_batch_size // num_pipelines
    cat = info.catalogue
    ds = info.builder.as_dataset(
        split=split, as_supervised=True, shuffle_files=training,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=seed + epoch, try_autocache=False))
    num_classes = info.num_classes
    if training:
        ds = ds.shuffle(min(shuffle_buffer, info.num_examples(split)), seed=seed + epoch,
                        reshuffle_each_iteration=False)
    ds = ds.map(lambda image, label: (image, label, 1.0))
    if not training:
        total = info.num_examples(split)
        padded = -(-total // global_batch_size) * global_batch_size
        pad = tf.data.Dataset.from_tensors(
            (tf.io.encode_png(tf.zeros([1, 1, 3], tf.uint8)), tf.constant(0, tf.int64), 0.0))
        ds = ds.concatenate(pad.repeat(padded - total))
    ds = ds.enumerate()
    if training:
        ds = ds.take(info.num_examples(split) // global_batch_size * global_batch_size)
    if num_pipelines > 1:
        ds = ds.filter(lambda i, _: (i % global_batch_size) // share == pipeline_id)
    if skip_steps:
        ds = ds.skip(skip_steps * share)
    scale = cat.crop_scale if crop_scale is None else crop_scale
    crop_pct = cat.eval_crop_pct if eval_crop_pct is None else eval_crop_pct

    def prepare(index, element):
        encoded, label, weight = element
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        if training:
            image = augment.train_transform(image, _seed_pair(seed, epoch, index), size=image_size,
                                            scale=scale, randaugment=randaugment)
        else:
            image = augment.center_crop(image, image_size, crop_pct)
        image = tf.ensure_shape(image, [image_size, image_size, 3])
        return image, tf.one_hot(label, num_classes), tf.cast(weight, tf.float32)

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    ds = ds.batch(replica_batch_size or share, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)
