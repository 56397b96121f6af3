"""A user's segmentation dataset, images and their class masks, prepared as a tfds dataset.

The folder (``--dataset=/path/to/folder``) is in one of three layouts:

* pairs, one folder per split (``train``, and ``val``, ``validation`` or ``test``)::

      folder/train/images/0001.jpg     # .jpg, .jpeg or .png
      folder/train/masks/0001.png      # the mask of images/0001.*
      folder/val/...
      folder/classes.txt               # optional: one class name per line, id order

* mmseg's ``img_dir`` / ``ann_dir``: ``images/<split>/<name>.*`` and
  ``annotations/<split>/<name>.png`` (``training`` / ``validation`` or ``train`` /
  ``val``). ADEChallengeData2016 as unzipped (the 150-class ADE20K of mmseg and of
  the papers' mIoU) is this layout; its ``objectInfo150.txt`` makes the classes
  ADE20K's (:data:`~keras_mobile.data.datasets.ADE20K_CLASSES`) with
  ``reduce_zero_label`` (0 "other" ignored, ``v`` the class ``v - 1``), as mmseg's
  ``ADE20KDataset``;
* Pascal VOC's devkit folder (``VOCdevkit/VOC2012``): ``ImageSets/Segmentation/
  {train,val}.txt`` list the ids of ``JPEGImages/<id>.jpg`` and
  ``SegmentationClass/<id>.png`` (and, where present, ``aug.txt`` with
  ``SegmentationClassAug/``: mmseg's "aug" split of SBD's masks); the classes are
  VOC's 21 (:data:`~keras_mobile.data.datasets.VOC_CLASSES`). tfds has no Pascal VOC
  segmentation: its ``voc`` builder reads the boxes only.

A mask holds a class id per pixel, 255 where no class applies (ignored: VOC's object
outlines): a 1-channel PNG, grayscale (``L``) or palette (``P``: VOC's colours are a
palette over the ids; its pixel values are the indices, read as such, never as
colours). Without ``classes.txt`` (and outside VOC and ADE20K) the classes are
``class_0`` .. ``class_<m>``, ``m`` the largest id of the masks.

Before anything is written, the files are checked; the first problem is one line
naming its file (:class:`~keras_mobile.data.datasets.DatasetError`): an image without
a mask or a mask without an image, no training or evaluation split, an image
TensorFlow cannot decode, a mask that is not a 1-channel PNG, a mask whose size is
not its image's, a class id outside the classes (other than 255). The dataset is then
prepared once per version of the folder (its files' paths, sizes and modification
times, and ``classes.txt``), in ``<data_dir>/mask_folder/<folder name>-<digest>/``,
by one process at a time (:func:`~keras_mobile.data.datasets._prepare_lock`), with
the features ``image``, ``image/filename`` and ``mask`` (``(H, W, 1)`` uint8: the
ids as read, re-encoded as grayscale PNG).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import hashlib
import io
import os
import re
import sys
from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_mobile.data.datasets import (
    ADE20K_CLASSES,
    FOLDER,
    IMAGE_EXTENSIONS,
    VOC_CLASSES,
    Catalogue,
    DatasetError,
    MaskSpec,
    _decode_error,
    _decoded_sizes,
    _prepare_lock,
    _some,
)

NAME = "mask_folder"
_VERSION = "1.0.0"
IGNORE_LABEL = 255
CLASSES_FILE = "classes.txt"
_TRAIN_SPLITS = ("train", "training")
_EVAL_SPLITS = ("val", "validation", "test")
_MASK_MODES = ("L", "P", "1")  # 1-channel PNGs whose values are the ids


class _Pair(NamedTuple):
    name: str  # the example's key: the file name without its extension
    image: str
    mask: str


@dataclasses.dataclass(frozen=True)
class _Listing:
    layout: str  # "pairs", "mmseg" or "voc"
    pairs: dict[str, list[_Pair]]  # {split: pairs in name order}
    train_split: str
    eval_split: str


def layout(root: str) -> str | None:
    """The layout of a mask folder ("pairs", "mmseg", "voc"), or None for a folder
    that is none (an image folder, a COCO-JSON folder)."""
    if not os.path.isdir(root):
        return None
    if os.path.isdir(os.path.join(root, "ImageSets", "Segmentation")) and any(
            os.path.isdir(os.path.join(root, f)) for f in ("SegmentationClass",
                                                            "SegmentationClassAug")):
        return "voc"
    annotations = os.path.join(root, "annotations")
    if os.path.isdir(os.path.join(root, "images")) and os.path.isdir(annotations) and \
            _subfolders(annotations) and not glob.glob(os.path.join(glob.escape(annotations),
                                                                    "*.json")):
        return "mmseg"  # (a COCO-JSON folder's annotations/ holds json files)
    if any(os.path.isdir(os.path.join(root, split, "masks")) for split in _subfolders(root)):
        return "pairs"
    return None


def is_mask_folder(root: str) -> bool:
    """Whether ``root`` is meant as a mask folder (:func:`layout`)."""
    return layout(root) is not None


def _subfolders(path: str) -> list[str]:
    return sorted(f for f in os.listdir(path) if os.path.isdir(os.path.join(path, f))
                  and not f.startswith("."))


def _files(root: str, folder: str, extensions: tuple[str, ...]) -> dict[str, str]:
    """``{name without extension: path}`` of the ``extensions`` files of ``folder``; two
    files of one name (``a.jpg``, ``a.png``) are an error."""
    found: dict[str, str] = {}
    if not os.path.isdir(folder):
        return found
    for file in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(file)
        if ext.lower() not in extensions or file.startswith("."):
            continue
        path = os.path.join(folder, file)
        if stem in found:
            raise DatasetError(f"mask folder {root!r}: {os.path.relpath(found[stem], root)} and "
                               f"{os.path.relpath(path, root)} have one name; an image and its "
                               f"mask are paired by name, so rename or remove one.")
        found[stem] = path
    return found


def _pair_folders(root: str, split: str, images: str, masks: str) -> list[_Pair]:
    """The pairs of ``images`` and ``masks`` (two folders) by name, or the one-line error
    of an image without a mask or the reverse."""
    image_files = _files(root, images, IMAGE_EXTENSIONS)
    mask_files = _files(root, masks, (".png",))
    rel = lambda path: os.path.relpath(path, root)  # noqa: E731
    lonely = [rel(image_files[n]) for n in image_files if n not in mask_files]
    if lonely:
        raise DatasetError(
            f"mask folder {root!r}: {len(lonely)} images of split {split!r} have no mask "
            f"({rel(os.path.join(masks, '<name>.png'))}): {_some(lonely)}; add their masks "
            f"or remove them.")
    lonely = [rel(mask_files[n]) for n in mask_files if n not in image_files]
    if lonely:
        raise DatasetError(
            f"mask folder {root!r}: {len(lonely)} masks of split {split!r} have no image "
            f"({rel(os.path.join(images, '<name>'))}.jpg, .jpeg or .png): {_some(lonely)}; "
            f"add their images or remove them.")
    return [_Pair(n, image_files[n], mask_files[n]) for n in sorted(image_files)]


def _voc_pairs(root: str) -> dict[str, list[_Pair]]:
    sets = os.path.join(root, "ImageSets", "Segmentation")
    pairs = {}
    for split, masks in (("train", "SegmentationClass"), ("val", "SegmentationClass"),
                         ("aug", "SegmentationClassAug")):
        listed = os.path.join(sets, f"{split}.txt")
        if not os.path.isfile(listed) or not os.path.isdir(os.path.join(root, masks)):
            continue
        with open(listed) as f:
            ids = [line.strip() for line in f if line.strip()]
        split_pairs, missing = [], []
        for name in ids:
            pair = _Pair(name, os.path.join(root, "JPEGImages", f"{name}.jpg"),
                         os.path.join(root, masks, f"{name}.png"))
            missing += [os.path.relpath(p, root) for p in pair[1:] if not os.path.isfile(p)]
            split_pairs.append(pair)
        if missing:
            raise DatasetError(f"mask folder {root!r}: {os.path.relpath(listed, root)} lists "
                               f"{len(missing)} files missing on disk: {_some(missing)}.")
        if split_pairs:
            pairs[split] = split_pairs
    return pairs


def _list(root: str) -> _Listing:
    """The folder's pairs per split, checked for orphans and splits (not their content)."""
    kind = layout(root)
    if kind == "voc":
        pairs = _voc_pairs(root)
        needs = "ImageSets/Segmentation/train.txt and val.txt, with JPEGImages/ and " \
                "SegmentationClass/"
    elif kind == "mmseg":
        images, masks = os.path.join(root, "images"), os.path.join(root, "annotations")
        pairs = {split: _pair_folders(root, split, os.path.join(images, split),
                                      os.path.join(masks, split))
                 for split in sorted(set(_subfolders(images)) | set(_subfolders(masks)))}
        needs = "images/training/ and annotations/training/ (or train/), and validation/ " \
                "(or val/, test/) likewise"
    else:
        pairs = {split: _pair_folders(root, split, os.path.join(root, split, "images"),
                                      os.path.join(root, split, "masks"))
                 for split in _subfolders(root)
                 if {"images", "masks"} & set(_subfolders(os.path.join(root, split)))}
        needs = "train/images/ and train/masks/, and val/ (or validation/, test/) likewise"
    pairs = {split: split_pairs for split, split_pairs in pairs.items() if split_pairs}
    train = next((s for s in _TRAIN_SPLITS if s in pairs), None)
    evaluation = next((s for s in _EVAL_SPLITS if s in pairs), None)
    if train is None or evaluation is None:
        missing = "training" if train is None else "evaluation"
        raise DatasetError(f"mask folder {root!r} has no {missing} split: it needs {needs}; "
                           f"found splits {sorted(pairs) or 'none'} (with images).")
    return _Listing(kind, pairs, train, evaluation)


def _class_file(root: str) -> list[str] | None:
    """The names of ``classes.txt``, or None without one."""
    path = os.path.join(root, CLASSES_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f.read().rstrip().splitlines()]
    where = f"mask folder {root!r}: {CLASSES_FILE}"
    if not lines or not lines[0]:
        raise DatasetError(f"{where} is empty; write one class name per line, class 0 first.")
    if "" in lines:
        raise DatasetError(f"{where} line {lines.index('') + 1} is empty; every line names a "
                           f"class (its id is the line's index, from 0).")
    doubled = sorted({name for name in lines if lines.count(name) > 1})
    if doubled:
        raise DatasetError(f"{where} names {doubled} more than once; class names must be "
                           f"unique.")
    if len(lines) > IGNORE_LABEL:
        raise DatasetError(f"{where} has {len(lines)} classes; masks are 8-bit, ids 0.."
                           f"{IGNORE_LABEL - 1} ({IGNORE_LABEL} is ignored).")
    return lines


def _classes(root: str, listing: _Listing) -> tuple[list[str] | None, bool, str]:
    """``(class names or None: from the masks, reduce_zero_label, where they come from)``."""
    names = _class_file(root)
    if names is not None:
        return names, False, CLASSES_FILE
    if listing.layout == "voc":
        return list(VOC_CLASSES), False, "Pascal VOC's 21 classes"
    if listing.layout == "mmseg" and os.path.isfile(os.path.join(root, "objectInfo150.txt")):
        return list(ADE20K_CLASSES), True, "ADE20K's 150 classes, 0 ignored (objectInfo150.txt)"
    return None, False, "the masks"


class _MaskError(Exception):
    """Why a mask file is no class map."""


def _mask_array(path: str) -> np.ndarray:
    """The ids of a mask PNG, ``[H, W]`` uint8 (a palette PNG's indices), or
    :class:`_MaskError`."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                raise _MaskError(f"is a {image.format} file, not a PNG (a lossy format "
                                 f"changes the class ids)")
            if image.mode not in _MASK_MODES:
                raise _MaskError(f"is a {image.mode} image; a mask holds one class id per "
                                 f"pixel: a 1-channel PNG, grayscale (L) or palette (P)")
            return np.asarray(image).astype(np.uint8)
    except _MaskError:
        raise
    except Exception as error:  # noqa: BLE001  (PIL raises many kinds)
        reason = " ".join(str(error).split())[:120]
        raise _MaskError(f"cannot be read as a PNG ({type(error).__name__}: {reason})") \
            from None


def _scan(path: str) -> tuple[tuple[int, int], np.ndarray] | str:
    """``((height, width), [256] bool: the values present)`` of a mask, or why not."""
    try:
        ids = _mask_array(path)
    except _MaskError as error:
        return str(error)
    return ids.shape, np.bincount(ids.ravel(), minlength=256) > 0


def _check(root: str, listing: _Listing, names: list[str] | None, reduce_zero_label: bool,
           source: str) -> list[str]:
    """The class names, once every pair is checked: images decode, masks are 1-channel
    PNGs of their image's size holding known ids (or 255)."""
    pairs = [pair for split in listing.pairs.values() for pair in split]
    rel = lambda path: os.path.relpath(path, root)  # noqa: E731
    if len(pairs) >= 10_000:
        print(f"checking the {len(pairs)} images and masks of {root} (once)", file=sys.stderr,
              flush=True)
    sizes = _decoded_sizes([pair.image for pair in pairs])
    with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        scans = list(pool.map(_scan, [pair.mask for pair in pairs]))
    where = f"mask folder {root!r}:"
    present = np.zeros(256, bool)
    for pair, scan in zip(pairs, scans, strict=True):
        if pair.image not in sizes:
            raise DatasetError(f"{where} image {rel(pair.image)} cannot be decoded by "
                               f"TensorFlow ({_decode_error(pair.image)}); repair or remove it.")
        if isinstance(scan, str):
            raise DatasetError(f"{where} mask {rel(pair.mask)} {scan}.")
        (height, width), values = scan
        image_height, image_width = sizes[pair.image]
        if (height, width) != (image_height, image_width):
            raise DatasetError(f"{where} mask {rel(pair.mask)} is {width}x{height} but image "
                               f"{rel(pair.image)} is {image_width}x{image_height} (width x "
                               f"height); a mask labels its image's pixels.")
        if names is not None:
            top = len(names) - (0 if reduce_zero_label else 1)
            bad = np.flatnonzero(values[top + 1:IGNORE_LABEL])
            if bad.size:
                raise DatasetError(
                    f"{where} mask {rel(pair.mask)} has label {int(bad[0]) + top + 1}, outside "
                    f"0..{top} ({source}) and not {IGNORE_LABEL} (ignored); fix the mask"
                    f"{' or add the class to ' + CLASSES_FILE if source == CLASSES_FILE else ''}.")
        present |= values
    if names is None:
        ids = np.flatnonzero(present[:IGNORE_LABEL])
        if not ids.size:
            raise DatasetError(f"{where} its masks hold no class id, only {IGNORE_LABEL} "
                               f"(ignored) pixels.")
        names = [f"class_{i}" for i in range(int(ids[-1]) + 1)]
    return names


def _config_name(root: str, listing: _Listing) -> str:
    """``<folder name>-<digest of its files' paths, sizes, modification times and
    classes.txt>``."""
    digest = hashlib.sha256(f"{os.path.abspath(root)}\n{_VERSION}\n{listing.layout}\n".encode())
    for extra in (CLASSES_FILE, "objectInfo150.txt"):
        path = os.path.join(root, extra)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                digest.update(extra.encode() + b"\n" + f.read() + b"\n")
    for split, pairs in listing.pairs.items():
        for pair in pairs:
            for path in pair[1:]:
                stat = os.stat(path)
                digest.update(f"{split}\t{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    folder = re.sub(r"[^\w.-]", "_", os.path.basename(os.path.abspath(root))) or "root"
    return f"{folder}-{digest.hexdigest()[:16]}"


def _png(ids: np.ndarray) -> bytes:
    """``ids`` ``[H, W]`` uint8 as a grayscale PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(ids, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


class MaskFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """The checked splits of a mask folder, written as a tfds dataset."""

    name = NAME
    VERSION = tfds.core.Version(_VERSION)
    RELEASE_NOTES = {_VERSION: "First release."}

    def __init__(self, root: str, listing: _Listing, class_names: list[str],
                 reduce_zero_label: bool, **kwargs):
        self._root, self._listing = root, listing
        self._class_names, self._reduce_zero_label = class_names, reduce_zero_label
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(),
                "image/filename": tfds.features.Text(),
                "mask": tfds.features.Image(shape=(None, None, 1)),
            }),
            metadata=tfds.core.MetadataDict(
                class_names=list(self._class_names), reduce_zero_label=self._reduce_zero_label,
                ignore_label=IGNORE_LABEL,
                train_split=self._listing.train_split, eval_split=self._listing.eval_split),
            description=self.__doc__,
        )

    def _split_generators(self, dl_manager):  # noqa: ARG002  (nothing to download)
        return {split: self._generate_examples(split) for split in self._listing.pairs}

    def _generate_examples(self, split):
        for pair in self._listing.pairs[split]:
            yield pair.name, {"image": pair.image,
                              "image/filename": os.path.relpath(pair.image, self._root),
                              "mask": _png(_mask_array(pair.mask))}


def prepare(root: str, data_dir: str) -> tuple[tfds.core.DatasetBuilder, Catalogue]:
    """The prepared builder of the mask folder ``root`` and its catalogue (its
    :class:`~keras_mobile.data.datasets.MaskSpec` on ``mask``); the folder is checked and
    written on first use (once per version of its files)."""
    listing = _list(root)
    config = _config_name(root, listing)
    path = os.path.join(data_dir, NAME, config, _VERSION)
    with _prepare_lock(f"{NAME}/{config}", data_dir):
        if not tf.io.gfile.exists(os.path.join(path, "dataset_info.json")):
            names, reduce_zero_label, source = _classes(root, listing)
            names = _check(root, listing, names, reduce_zero_label, source)
            builder = MaskFolder(root, listing, names, reduce_zero_label,
                                 config=tfds.core.BuilderConfig(name=config), data_dir=data_dir)
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
                compute_stats=tfds.download.ComputeStatsMode.SKIP))
    builder = tfds.builder_from_directory(path)
    metadata = builder.info.metadata
    names = tuple(metadata["class_names"])
    mask = MaskSpec("mask", len(names), names, int(metadata["ignore_label"]),
                    bool(metadata["reduce_zero_label"]))
    catalogue = dataclasses.replace(FOLDER, train_split=listing.train_split,
                                    eval_split=listing.eval_split, mask=mask)
    return builder, catalogue
