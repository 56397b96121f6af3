"""Datasets through tensorflow-datasets, offline first, and the input pipeline.

``dataset_info(name, data_dir)`` resolves a name (or a folder of class-named
image folders, a COCO-JSON detection folder: :mod:`keras_mobile.data.coco_json`, or
a folder of image and mask PNG pairs: :mod:`keras_mobile.data.mask_folder`)
to a prepared tfds builder and its splits, failing with the
command that would prepare it instead of tfds' network retries. Its tasks are read
from the features: ``label``, classification; ``objects/bbox`` and
``objects/label``, detection; a class mask described by the catalogue
(:class:`MaskSpec`), segmentation. A dataset may serve several (the embedded
``keras_mobile_shapes_detection``: detection and segmentation); ``task=`` picks
whose classes ``num_classes`` / ``class_names`` are, by default its first
(``DatasetInfo.check_task`` refuses a task it has none of in one line).

Segmentation datasets in tfds (4.9): ``scene_parse150`` is ADE20K's images with
the Places Challenge 2017 *instance* annotations (``annotations_instance.tar``:
red channel = one of 100 object categories, 0 = none of them, green = instance),
not the 150-class semantic maps of ADEChallengeData2016 that mmseg and the papers'
ADE20K mIoU use; it is catalogued as what it holds, 100 objects + background
(:data:`ADE20K_INSTANCE_CLASSES`). The 150-class ADE20K (ADEChallengeData2016 as
unzipped) and Pascal VOC segmentation (tfds' ``voc`` has boxes only; VOCdevkit's
VOC2012 with ``SegmentationClass``) are read as mask folders. An image folder is
checked when it is opened (``_check_folder``): an empty class folder, a class
without training images or a file TensorFlow cannot decode is refused there,
named, instead of ending a training run mid-epoch. Several processes
may prepare one data dir at once (workers of a cluster, a shared NFS data dir):
one prepares, the others wait for it (``_prepare``).
``input_pipeline(...)`` turns a split into batches for one input pipeline of a
tf.distribute strategy: every element's augmentation is seeded by its position,
so all workers agree on the global batch, and a resumed run skips exactly the
steps it already took.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import sys

import tensorflow as tf
import tensorflow_datasets as tfds

from keras_mobile import files
from keras_mobile.data import augment, shapes, shapes_detection


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """How a segmentation dataset's mask feature holds class ids.

    A pixel's class is ``mask[..., channel]``; ``ignore_label`` (a stored value) is
    no class: no loss, no score. ``reduce_zero_label`` (mmseg's, ADE20K's): stored 0
    is ignored too and ``v`` is class ``v - 1``. The input pipeline
    (:mod:`keras_mobile.segmentation.data`) gives class ids, and 255 for ignored
    pixels whatever ``ignore_label`` is.
    """

    feature: str
    num_classes: int
    class_names: tuple[str, ...]
    ignore_label: int = 255
    reduce_zero_label: bool = False
    channel: int = 0


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """What the trainer needs to know about a named dataset."""

    train_split: str
    eval_split: str
    image_size: int | None  # None: the model's default resolution
    eval_crop_pct: float = 0.875
    crop_scale: tuple[float, float] = (0.08, 1.0)
    manual: bool = False  # needs files placed by hand (imagenet2012)
    mask: MaskSpec | None = None  # its class mask: a segmentation dataset


# mmseg's PascalVOCDataset classes (VOC's SegmentationClass PNGs: palette indices,
# 255 the objects' outlines, ignored).
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")
# mmseg's ADE20KDataset classes (ADEChallengeData2016's annotations: 0 "other",
# ignored, and v the class v - 1; reduce_zero_label). "bed " with its space, as mmseg.
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed ", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
    "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag")
# The 100 object categories of ADE20K's instance annotations (Places Challenge 2017,
# CSAILVision/placeschallenge instanceInfo100_train.txt, in id order 1..100): the red
# channel of tfds' scene_parse150 annotation.
ADE20K_INSTANCE_CLASSES = (
    "bed", "windowpane", "cabinet", "person", "door", "table", "curtain", "chair", "car",
    "painting", "sofa", "shelf", "mirror", "armchair", "seat", "fence", "desk", "wardrobe",
    "lamp", "bathtub", "railing", "cushion", "box", "column", "signboard", "chest of drawers",
    "counter", "sink", "fireplace", "refrigerator", "stairs", "case", "pool table", "pillow",
    "screen door", "bookcase", "coffee table", "toilet", "flower", "book", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat",
    "arcade machine", "bus", "towel", "light", "truck", "chandelier", "awning", "streetlight",
    "booth", "television receiver", "airplane", "apparel", "pole", "bannister", "ottoman",
    "bottle", "van", "ship", "fountain", "washer", "plaything", "stool", "barrel", "basket",
    "bag", "minibike", "oven", "ball", "food", "step", "trade name", "microwave", "pot",
    "animal", "bicycle", "dishwasher", "screen", "sculpture", "hood", "sconce", "vase",
    "traffic light", "tray", "ashcan", "fan", "plate", "monitor", "bulletin board", "radiator",
    "glass", "clock", "flag")

DATASETS = {
    shapes.NAME: Catalogue("train", "validation", shapes.IMAGE_SIZE, eval_crop_pct=1.0,
                           crop_scale=(0.6, 1.0)),
    # Smaller shapes: a milder crop keeps them in the picture.
    shapes.HARD_NAME: Catalogue("train", "validation", shapes.IMAGE_SIZE, eval_crop_pct=1.0,
                                crop_scale=(0.8, 1.0)),
    # Its mask holds the class id (0 the background, a class; objects 1..6).
    shapes_detection.NAME: Catalogue(
        "train", "validation", shapes_detection.IMAGE_SIZE,
        mask=MaskSpec("mask", len(shapes_detection.CLASSES) + 1,
                      ("background", *shapes_detection.CLASSES))),
    "imagenet2012": Catalogue("train", "validation", None, manual=True),
    "imagenette": Catalogue("train", "validation", None),
    "tf_flowers": Catalogue("train[:90%]", "train[90%:]", None),
    "cifar10": Catalogue("train", "test", 32, eval_crop_pct=1.0, crop_scale=(0.64, 1.0)),
    "cifar100": Catalogue("train", "test", 32, eval_crop_pct=1.0, crop_scale=(0.64, 1.0)),
    # Detection (crop settings unused). COCO: train2017 / val2017 (2014: train2014 / val2014,
    # not mmdet's trainval35k). VOC2007: trainval / test, the SSD paper's and mmdet's VOC2007
    # split; VOC2012's test set has no annotations, so train / val.
    "coco/2017": Catalogue("train", "validation", None),
    "coco/2014": Catalogue("train", "validation", None),
    "voc/2007": Catalogue("train+validation", "test", None),
    "voc/2012": Catalogue("train", "validation", None),
    # Segmentation. ADE20K's images (20,210 train, 2,000 validation as "test") with the
    # instance annotations (see the module docstring): red = object category 1..100,
    # 0 = none of them (stuff, unlabelled), kept as the class "background".
    "scene_parse150": Catalogue(
        "train", "test", None,
        mask=MaskSpec("annotation", len(ADE20K_INSTANCE_CLASSES) + 1,
                      ("background", *ADE20K_INSTANCE_CLASSES), channel=0)),
}
FOLDER = Catalogue("train", "val", None)
DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")


class DatasetError(ValueError):
    """A dataset that cannot be read, with what to do about it."""


class SplitError(DatasetError):
    """A split the dataset does not have, or a slice of it larger than the split."""


# The objects' flags of boxes that are no training target and that COCO evaluation
# ignores (its iscrowd): COCO's crowds, VOC's difficult objects (mmdet's ignored boxes).
IGNORED_FLAGS = ("is_crowd", "is_difficult")
_TASK_FEATURES = {"classification": "label", "detection": "objects/bbox, objects/label"}
TASKS = ("detection", "classification", "segmentation")  # a dataset's first: its default


def _mask(features, catalogue: Catalogue) -> MaskSpec | None:
    mask = catalogue.mask
    return mask if mask is not None and mask.feature in features else None


def _tasks(features, catalogue: Catalogue) -> tuple[str, ...]:
    """The tasks whose labels ``features`` hold, in :data:`TASKS` order."""
    objects = features["objects"] if "objects" in features else None
    found = set()
    if isinstance(objects, tfds.features.Sequence) and {"bbox", "label"} <= set(objects.feature):
        found.add("detection")
    if isinstance(features["label"] if "label" in features else None, tfds.features.ClassLabel):
        found.add("classification")
    if _mask(features, catalogue) is not None:
        found.add("segmentation")
    return tuple(task for task in TASKS if task in found)


def _classes(features, catalogue: Catalogue, task: str) -> tuple[int, tuple[str, ...]]:
    """``(num_classes, class_names)`` of ``task``'s labels."""
    if task == "segmentation":
        mask = _mask(features, catalogue)
        return mask.num_classes, tuple(mask.class_names)
    # A detection dataset's classes are its objects'.
    label = features["label"] if task == "classification" else features["objects"]["label"]
    return label.num_classes, tuple(label.names)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A prepared dataset: its builder, catalogue and the classes of ``task``, one of
    the tasks it serves (:attr:`tasks`; default: the first)."""

    name: str
    builder: tfds.core.DatasetBuilder
    catalogue: Catalogue
    num_classes: int
    class_names: tuple[str, ...]
    task: str | None = None  # whose labels num_classes / class_names are

    def __post_init__(self):
        if self.task is None:
            object.__setattr__(self, "task", next(iter(self.tasks), None))

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks its features serve, in :data:`TASKS` order: "detection"
        (``objects/bbox``, ``objects/label``), "classification" (``label``),
        "segmentation" (a class mask: :attr:`mask`)."""
        return _tasks(self.builder.info.features, self.catalogue)

    @property
    def mask(self) -> MaskSpec | None:
        """How its mask feature holds class ids (a segmentation dataset), or None."""
        return _mask(self.builder.info.features, self.catalogue)

    def for_task(self, task: str) -> DatasetInfo:
        """This dataset with ``task``'s classes (:meth:`check_task` first)."""
        self.check_task(task)
        if task == self.task:
            return self
        num_classes, names = _classes(self.builder.info.features, self.catalogue, task)
        return dataclasses.replace(self, num_classes=num_classes, class_names=names, task=task)

    @property
    def ignored_flag(self) -> str | None:
        """The objects' flag of a detection dataset whose boxes are no training target
        and are COCO evaluation's iscrowd (:data:`IGNORED_FLAGS`), or None."""
        objects = self.builder.info.features["objects"] if "detection" in self.tasks else {}
        return next((flag for flag in IGNORED_FLAGS if flag in objects), None)

    def check_task(self, task: str) -> None:
        """:class:`DatasetError` unless this dataset serves ``task`` (one of
        :attr:`tasks`), naming its first task (the one of its default classes)."""
        tasks = self.tasks
        if task in tasks:
            return
        first = tasks[0]
        features = self.mask.feature if first == "segmentation" else _TASK_FEATURES[first]
        raise DatasetError(f"dataset {self.name!r} is a {first} dataset ({features}); train "
                           f"it with --task={first}, not {task}.")

    def num_examples(self, split: str) -> int:
        """Examples in ``split`` (tfds syntax: "train", "train[:64]", "train[:90%]+val"),
        or :class:`SplitError` naming the split and what the dataset has."""
        splits = self.builder.info.splits
        for part in str(split).split("+"):
            base = part.split("[")[0].strip()
            if base not in splits:
                raise SplitError(f"dataset {self.name!r} has no split {base!r} (in split "
                                 f"{split!r}); its splits are {sorted(splits)}")
            try:
                splits[part.strip()]
            except ValueError as error:  # tfds: "Requested slice [:64] incompatible with 28.."
                raise SplitError(f"split {split!r} asks for more examples than the "
                                 f"{splits[base].num_examples} of {base!r} in dataset "
                                 f"{self.name!r} ({error})") from None
        try:
            return int(splits[split].num_examples)
        except ValueError as error:  # a malformed slice
            raise SplitError(f"split {split!r} of dataset {self.name!r}: {error}") from None


def _data_dir(data_dir: str | None) -> str:
    return os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR") or DEFAULT_DATA_DIR)


def check_name(name: str) -> None:
    """Fails fast on a name that is neither a known dataset nor a folder."""
    if name not in DATASETS and not os.path.isdir(name):
        raise DatasetError(f"dataset must be one of {sorted(DATASETS)}, a folder of "
                           f"<split>/<class>/<image> files, a COCO-JSON folder "
                           f"(annotations/instances_<split>.json, <split>/<image>) or a mask "
                           f"folder (<split>/images/<name>.jpg, <split>/masks/<name>.png). "
                           f"Received: dataset={name!r}")


def dataset_info(name: str, data_dir: str | None = None, *, download: bool = False,
                 task: str | None = None) -> DatasetInfo:
    """The prepared builder of ``name``; the embedded dataset is prepared on first
    use (it is generated, nothing is downloaded); others only with ``download``.
    ``task``: whose classes ``num_classes`` / ``class_names`` are, for a dataset
    serving several (default: its first, :data:`TASKS` order); a task it does not
    serve is the one-line error of :meth:`DatasetInfo.check_task`."""
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)} or None. Received: task={task!r}")
    check_name(name)
    from keras_mobile.data import coco_json, mask_folder  # noqa: PLC0415  (they build on it)

    if name not in DATASETS and mask_folder.is_mask_folder(name):
        builder, catalogue = mask_folder.prepare(name, _data_dir(data_dir))
    elif name not in DATASETS and coco_json.is_coco_folder(name):
        builder, catalogue = coco_json.prepare(name, _data_dir(data_dir))
    elif name not in DATASETS:
        builder = _ImageFolder(name)
        splits = set(builder.info.splits)
        catalogue = FOLDER if "val" in splits else dataclasses.replace(
            FOLDER, eval_split="validation" if "validation" in splits else "test")
        missing = {catalogue.train_split, catalogue.eval_split} - splits
        if missing:
            raise DatasetError(f"folder dataset {name!r} needs the sub-folders train/ and val/ "
                               f"(or validation/, test/); found {sorted(splits) or 'none'}.")
        _check_folder(builder, name, catalogue.train_split, _data_dir(data_dir))
    else:
        catalogue = DATASETS[name]
        data_dir = _data_dir(data_dir)
        builder = tfds.builder(name, data_dir=data_dir)
        if not builder.is_prepared():
            # The embedded datasets are generated here on first use.
            if name in (shapes.NAME, shapes.HARD_NAME, shapes_detection.NAME) or download:
                kwargs = {}
                if catalogue.manual:
                    kwargs["download_config"] = tfds.download.DownloadConfig(
                        manual_dir=os.path.join(data_dir, "downloads", "manual"))
                builder = _prepare(name, data_dir, **kwargs)
            else:
                how = (f"place ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in "
                       f"{os.path.join(data_dir, 'downloads', 'manual')} and run"
                       if catalogue.manual else "run")
                raise DatasetError(
                    f"dataset {name!r} is not prepared in {data_dir}. To prepare it, {how}: "
                    f"tfds build {name} --data_dir={data_dir}  (or pass --download).")
    features = builder.info.features
    tasks = _tasks(features, catalogue)
    if not tasks:
        raise DatasetError(f"dataset {name!r} has neither a label (classification) nor "
                           f"objects/bbox and objects/label (detection); its features are "
                           f"{sorted(features)}.")
    chosen = task or tasks[0]
    info = DatasetInfo(name, builder, catalogue, *_classes(features, catalogue, tasks[0]),
                       task=tasks[0])
    return info.for_task(chosen)


@contextlib.contextmanager
def _prepare_lock(name: str, data_dir: str):
    """Holds an exclusive lock on ``<data_dir>/<name>/.prepare.lock``, saying once on
    stderr when it waits for another process. flock: the OS releases the lock of a
    process that dies, and Linux maps it to a POSIX lock on NFS, seen by every client.
    Not locked: a remote data dir (gs://...) or no fcntl (Windows)."""
    if "://" in data_dir:
        yield
        return
    folder = os.path.join(data_dir, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, ".prepare.lock")
    lock = files.lock_file(path, wait=False)
    if lock is None:
        print(f"waiting for another process to prepare {name} in {data_dir}",
              file=sys.stderr, flush=True)
        lock = files.lock_file(path, wait=True)
    with lock:  # closing it unlocks
        yield


def _prepare(name: str, data_dir: str, **kwargs) -> tfds.core.DatasetBuilder:
    """``download_and_prepare`` of ``name`` by one process at a time; a process that
    finds it prepared once it holds the lock (another one did it) reads it instead."""
    with _prepare_lock(name, data_dir):
        builder = tfds.builder(name, data_dir=data_dir)  # anew: reads what was prepared
        if not builder.is_prepared():
            builder.download_and_prepare(**kwargs)
    return builder


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # the files tfds' ImageFolder reads


class _ImageFolder(tfds.folder_dataset.ImageFolder, skip_registration=True):
    """tfds' ImageFolder, but reading split slices ("train[:64]", "train[:90%]+val";
    tfds: "Subsplit API not yet supported") and shuffling its files with the
    read config's seed (tfds: unseeded, so workers and resumed runs disagreed)."""

    name = "image_folder"

    def _as_dataset(self, split, shuffle_files=False, decoders=None, read_config=None):
        instruction = split if isinstance(split, tfds.core.ReadInstruction) else \
            tfds.core.ReadInstruction.from_spec(str(split))
        examples = [example for part in instruction.to_absolute(self.info.splits)
                    for example in self._split_examples[part.splitname][part.from_:part.to]]
        label = self.info.features["label"]
        ds = tf.data.Dataset.from_tensor_slices((
            tf.constant([e.image_path for e in examples], tf.string),
            tf.constant([label.str2int(e.label) for e in examples], tf.int64)))
        if shuffle_files and examples:
            ds = ds.shuffle(len(examples), seed=getattr(read_config, "shuffle_seed", None))

        def load(path, label):
            example = {"image": tf.io.read_file(path), "label": label, "image/filename": path}
            return self.info.features.decode_example(example, decoders=decoders)

        return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def _some(items: list[str], count: int = 5) -> str:
    more = f" and {len(items) - count} more" if len(items) > count else ""
    return ", ".join(items[:count]) + more


def _subfolders(path: str) -> list[str]:
    return sorted(f.rstrip("/") for f in tf.io.gfile.listdir(path)
                  if tf.io.gfile.isdir(os.path.join(path, f)))


def _check_folder(builder: _ImageFolder, root: str, train_split: str, data_dir: str) -> None:
    """Refuses, naming them, what would change the classes or stop training midway:
    a class folder without images (tfds still makes it a class), a class that has no
    training images, and an image file TensorFlow cannot decode (the input pipeline's
    decoder, on every file of every split, in parallel; once per listing of names,
    sizes and modification times, remembered in ``<data_dir>/keras_mobile_checks``)."""
    examples = builder._split_examples  # noqa: SLF001  {split: [(image_path, label)]}
    trained = {e.label for e in examples.get(train_split, ())}
    empty, untrained = [], []
    for split in sorted(examples):
        labels = {e.label for e in examples[split]}
        for label in _subfolders(os.path.join(root, split)):
            if label not in labels:
                empty.append(f"{split}/{label}/")
            elif label not in trained and split != train_split:
                untrained.append(f"{split}/{label}/")
    if empty:
        raise DatasetError(f"folder dataset {root!r} has empty class folders (no "
                           f"{'/'.join(IMAGE_EXTENSIONS)} file): {_some(empty)}; every folder "
                           f"of a split is a class, so remove them or add images.")
    if untrained:
        raise DatasetError(f"folder dataset {root!r} has classes without training images: "
                           f"{_some(untrained)} but no {train_split}/<class>/ images; every "
                           f"class needs training images (a misspelt folder name?).")
    paths = sorted(e.image_path for split in examples.values() for e in split)
    stamp = _check_stamp(root, paths, data_dir)
    if stamp and os.path.exists(stamp[0]):
        with open(stamp[0]) as f:
            if f.read() == stamp[1]:
                return  # this very listing was checked before
    if len(paths) >= 20_000:
        print(f"checking that the {len(paths)} images of {root} decode (once)",
              file=sys.stderr, flush=True)
    bad = _undecodable(paths)
    if bad:
        named = [f"{os.path.relpath(path, root)} ({_decode_error(path)})" for path in bad[:5]]
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DatasetError(f"folder dataset {root!r}: {len(bad)} of its {len(paths)} image files "
                           f"cannot be decoded by TensorFlow: {', '.join(named)}{more}; "
                           f"repair or delete them.")
    if stamp:
        with contextlib.suppress(OSError):  # a read-only data dir: no memory of the check
            os.makedirs(os.path.dirname(stamp[0]), exist_ok=True)
            with open(stamp[0] + f".{os.getpid()}", "w") as f:
                f.write(stamp[1])
            os.replace(stamp[0] + f".{os.getpid()}", stamp[0])


def _check_stamp(root: str, paths: list[str], data_dir: str) -> tuple[str, str] | None:
    """(the file remembering a good check of ``root``, the digest of its listing: names,
    sizes, modification times, TensorFlow's version); None for remote folders."""
    if "://" in root or "://" in data_dir:
        return None
    digest = hashlib.sha256(f"decode_image channels=3 tf {tf.__version__}\n".encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    root = os.path.abspath(root)
    key = hashlib.sha256(root.encode()).hexdigest()[:16]
    name = re.sub(r"[^\w.-]", "_", os.path.basename(root.rstrip(os.sep)))
    return os.path.join(data_dir, "keras_mobile_checks", f"{name}-{key}"), digest.hexdigest()


def _decoded_sizes(paths: list[str]) -> dict[str, tuple[int, int]]:
    """``{path: (height, width)}`` of the files of ``paths`` that the input pipeline's
    decoder reads; the others are left out."""
    def decode(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return path, tf.shape(image)[:2]  # the shape: the decoding is not pruned

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.ignore_errors().batch(4096)
    return {path.decode(): (int(size[0]), int(size[1]))
            for batch_paths, sizes in ds.as_numpy_iterator()
            for path, size in zip(batch_paths, sizes, strict=True)}


def _undecodable(paths: list[str]) -> list[str]:
    """The files of ``paths`` that the input pipeline's decoder fails on."""
    decoded = _decoded_sizes(paths)
    return [path for path in paths if path not in decoded]


def _decode_error(path: str) -> str:
    """TensorFlow's reason for failing on ``path``, on one line."""
    try:
        tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    except tf.errors.OpError as error:
        message = re.sub(r"^\{\{.*?\}\}\s*|\s*\[Op:\w+\].*$", "", error.message, flags=re.S)
        return " ".join(message.split())[:120]
    return "failed once, decodes now"


def _seed_pair(seed: int, epoch: int, index):
    return tf.stack([tf.cast(seed, tf.int64) * 1000003 + epoch, tf.cast(index, tf.int64)])


def batch_order(ds, padding, *, total: int, training: bool, global_batch_size: int,
                pipeline_id: int, num_pipelines: int, skip_steps: int):
    """``(index, element)`` in the order every input pipeline feeds them: evaluation
    padded with ``padding`` (a one-element dataset of weight 0) to whole global batches,
    training cut to whole batches; this pipeline's share of each global batch; the
    first ``skip_steps`` steps skipped (a resumed run continues on the next batch)."""
    share = global_batch_size // num_pipelines
    if not training:
        padded = -(-total // global_batch_size) * global_batch_size
        ds = ds.concatenate(padding.repeat(padded - total))
    ds = ds.enumerate()
    if training:
        ds = ds.take(total // global_batch_size * global_batch_size)
    if num_pipelines > 1:
        ds = ds.filter(lambda i, _: (i % global_batch_size) // share == pipeline_id)
    if skip_steps:
        ds = ds.skip(skip_steps * share)
    return ds


def pipeline_share(global_batch_size: int, num_pipelines: int) -> int:
    """One input pipeline's share of every global batch (checked: a whole number)."""
    if global_batch_size % num_pipelines:
        raise ValueError(f"global batch size {global_batch_size} is not divisible by the "
                         f"{num_pipelines} input pipelines")
    return global_batch_size // num_pipelines


def batched(ds, prepare, batch_size: int, deterministic: bool) -> tf.data.Dataset:
    """``prepare`` mapped over ``(index, element)`` pairs (:func:`batch_order`'s), whole
    batches of ``batch_size``, prefetched, with the options every input pipeline sets
    (its order deterministic or not; no auto-sharding: :func:`batch_order` shards)."""
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)


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
    info.check_task("classification")
    share = pipeline_share(global_batch_size, num_pipelines)
    cat = info.catalogue
    total = info.num_examples(split)  # a SplitError naming the split, not tfds' error
    ds = info.builder.as_dataset(
        split=split, as_supervised=True, shuffle_files=training,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=seed + epoch, try_autocache=False))
    num_classes = info.num_classes
    if training:
        ds = ds.shuffle(min(shuffle_buffer, total), seed=seed + epoch,
                        reshuffle_each_iteration=False)
    ds = ds.map(lambda image, label: (image, label, 1.0))
    pad = tf.data.Dataset.from_tensors(
        (tf.io.encode_png(tf.zeros([1, 1, 3], tf.uint8)), tf.constant(0, tf.int64), 0.0))
    ds = batch_order(ds, pad, total=total, training=training,
                     global_batch_size=global_batch_size, pipeline_id=pipeline_id,
                     num_pipelines=num_pipelines, skip_steps=skip_steps)
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

    return batched(ds, prepare, replica_batch_size or share, deterministic)
