"""A user's detection dataset in COCO-JSON format, prepared as a tfds dataset.

The folder (``--dataset=/path/to/folder``) has one COCO instances file per split and
the split's images in ``<split>/``, in mmdet's and detectron2's COCO layout::

    folder/annotations/instances_train2017.json   # split "train2017"
    folder/annotations/instances_val2017.json     # split "val2017"
    folder/train2017/000000000009.jpg             # the "file_name"s of the split's json
    folder/val2017/...

or Roboflow's "COCO" export (what Ultralytics users download)::

    folder/train/_annotations.coco.json
    folder/train/<image files>
    folder/valid/...

A json holds ``images`` (``id``, ``file_name``, ``height``, ``width``), ``annotations``
(``id``, ``image_id``, ``category_id``, ``bbox`` = ``[x, y, width, height]`` pixels,
``iscrowd``, default 0) and ``categories`` (``id``, ``name``), as
``instances_train2017.json`` does. The training split is ``train`` or the one split
named ``train*``; the evaluation split the first of ``val``, ``validation``,
``valid``, ``val*``, ``test*``.

The examples have the features of tfds' ``coco/2017`` (and of the embedded
detection dataset): ``image``, ``image/filename``, ``image/id`` and ``objects``:
``bbox`` (``BBoxFeature``: normalized ``ymin, xmin, ymax, xmax``), ``label`` (the
categories in id order as 0, 1, ...: ids need not be contiguous, COCO's run 1-90
with gaps), ``is_crowd`` (left out of training, COCO evaluation's iscrowd) and ``id``
(the annotation's). Images without annotations are kept: they are negatives.

Before anything is written the files are checked, and the first problem is one
line naming its file (:class:`~keras_mobile.data.datasets.DatasetError`): a split
without a json, a json image missing on disk, a box with a width or height <= 0 or
outside its image (by more than 1 pixel: exports round; within it is clipped), an
unknown category or image id, then an image TensorFlow cannot decode or whose size
is not the json's (an EXIF-rotated export: its boxes would be wrong). The dataset
is prepared once per version of the json files (their paths, sizes and
modification times) in
``<data_dir>/coco_json/<folder name>-<digest>/``, by one process at a time
(:func:`~keras_mobile.data.datasets._prepare_lock`).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import re
import sys
from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_mobile.data.datasets import (
    FOLDER,
    Catalogue,
    DatasetError,
    _decode_error,
    _decoded_sizes,
    _prepare_lock,
    _some,
)

NAME = "coco_json"
_VERSION = "1.0.0"
_MMDET = os.path.join("annotations", "instances_{}.json")
_ROBOFLOW = os.path.join("{}", "_annotations.coco.json")
_EVAL_SPLITS = ("val", "validation", "valid")
_TOLERANCE = 1.0  # pixels a box may leave its image by (exports round); clipped


def annotation_files(root: str) -> dict[str, str]:
    """``{split: json path}`` of a folder in either layout (mmdet's wins)."""
    found = {}
    for pattern in (_ROBOFLOW, _MMDET):
        for path in glob.glob(os.path.join(glob.escape(root), pattern.format("*"))):
            split = (os.path.basename(os.path.dirname(path)) if pattern == _ROBOFLOW else
                     os.path.basename(path)[len("instances_"):-len(".json")])
            found[split] = path
    return dict(sorted(found.items()))


def is_coco_folder(root: str) -> bool:
    """Whether ``root`` is meant as a COCO-JSON folder: it has ``annotations/`` or a
    ``<split>/_annotations.coco.json``."""
    return os.path.isdir(os.path.join(root, "annotations")) or bool(annotation_files(root))


def _splits(root: str, files: dict[str, str]) -> Catalogue:
    """The catalogue of a folder's splits, or the one-line error of a missing one."""
    names = sorted(files)
    trains = [s for s in names if s.startswith("train")]
    train = "train" if "train" in files else trains[0] if len(trains) == 1 else None
    evaluation = next((s for s in _EVAL_SPLITS if s in files), None) or next(
        (s for prefix in ("val", "test") for s in names if s.startswith(prefix)), None)
    if train is None or evaluation is None:
        missing = "training" if train is None else "evaluation"
        raise DatasetError(
            f"COCO-JSON folder {root!r} has no {missing} split: it needs "
            f"{_MMDET.format('train<...>')} and {_MMDET.format('val<...>')} (or "
            f"{_ROBOFLOW.format('train')} and {_ROBOFLOW.format('valid')}), one train* "
            f"split; found {[files[s] for s in names] or 'no json'}.")
    return dataclasses.replace(FOLDER, train_split=train, eval_split=evaluation)


class _Image(NamedTuple):
    path: str
    id: int
    file_name: str
    size: tuple[int, int]  # (height, width) of the json
    objects: list[dict]


def _read(root: str, split: str, path: str) -> tuple[list[str], list[_Image]]:
    """``(class names in category id order, the split's images)`` of one json, checked
    but for the image files' content (:func:`_check_images`)."""
    def error(problem: str) -> DatasetError:
        return DatasetError(f"COCO-JSON file {path}: {problem}")

    try:
        with open(path) as f:
            coco = json.load(f)
    except (OSError, ValueError) as reason:
        raise error(f"cannot be read as JSON ({reason}).") from None
    if not isinstance(coco, dict) or not {"images", "annotations", "categories"} <= set(coco):
        found = sorted(coco) if isinstance(coco, dict) else type(coco).__name__
        raise error('needs the keys "images", "annotations" and "categories" of a COCO '
                    f"instances file; found {found}.")
    if not all(isinstance(c, dict) and {"id", "name"} <= set(c) for c in coco["categories"]):
        raise error("every category needs an id and a name.")
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    names = [str(c["name"]) for c in categories]
    if len(set(names)) != len(names):
        raise error(f"category names must be unique (they name the classes). "
                    f"Received: {names}.")
    label_of = {c["id"]: i for i, c in enumerate(categories)}
    images, missing = {}, []
    for image in coco["images"]:
        if not {"id", "file_name", "height", "width"} <= set(image):
            raise error(f"image {image.get('id', image)!r} needs id, file_name, height and "
                        f"width.")
        if image["id"] in images:
            raise error(f"image id {image['id']!r} is used twice.")
        image_path = os.path.join(root, split, image["file_name"])
        images[image["id"]] = _Image(image_path, int(image["id"]), str(image["file_name"]),
                                     (int(image["height"]), int(image["width"])), [])
        if not os.path.isfile(image_path):
            missing.append(os.path.relpath(image_path, root))
    if missing:
        raise error(f"{len(missing)} of its {len(images)} images are missing on disk "
                    f"(looked for {os.path.join(root, split, '<file_name>')}): "
                    f"{_some(missing)}.")
    for ann in coco["annotations"]:
        where = f"annotation id {ann.get('id')!r}"
        if ann.get("image_id") not in images:
            raise error(f"{where} has image_id {ann.get('image_id')!r}, which is not in "
                        f"images.")
        if ann.get("category_id") not in label_of:
            raise error(f"{where} has category_id {ann.get('category_id')!r}, which is not "
                        f"in categories (ids {sorted(label_of)}).")
        image = images[ann["image_id"]]
        height, width = image.size
        bbox = ann.get("bbox")
        x, y, w, h = (float(v) for v in bbox) if isinstance(bbox, list) and len(bbox) == 4 \
            else (0, 0, 0, 0)
        if w <= 0 or h <= 0:
            raise error(f"{where} has a box of width or height <= 0 (or none): bbox [x, y, "
                        f"w, h] = {bbox}; fix or remove it.")
        if min(x, y) < -_TOLERANCE or x + w > width + _TOLERANCE or \
                y + h > height + _TOLERANCE:
            raise error(f"{where} has a box outside its image {image.id} ({width}x{height}): "
                        f"bbox [x, y, w, h] = {ann['bbox']}; fix or remove it.")
        box = np.clip([y / height, x / width, (y + h) / height, (x + w) / width], 0.0, 1.0)
        image.objects.append({"id": int(ann.get("id", -1)), "bbox": tfds.features.BBox(*box),
                              "label": label_of[ann["category_id"]],
                              "is_crowd": bool(ann.get("iscrowd", 0))})
    return names, list(images.values())


def _check_images(root: str, images: dict[str, list[_Image]], files: dict[str, str]) -> None:
    """Refuses, naming them, image files TensorFlow cannot decode or whose size is not
    the json's (the boxes would be scaled wrongly: an EXIF-rotated export, say)."""
    paths = [image.path for split in images.values() for image in split]
    if len(paths) >= 20_000:
        print(f"checking that the {len(paths)} images of {root} decode (once)",
              file=sys.stderr, flush=True)
    sizes = _decoded_sizes(paths)
    for split, split_images in images.items():
        for image in split_images:
            if image.path not in sizes:
                raise DatasetError(f"COCO-JSON file {files[split]}: image {image.id} "
                                   f"({image.path}) cannot be decoded by TensorFlow "
                                   f"({_decode_error(image.path)}); repair or remove it.")
            if sizes[image.path] != image.size:
                raise DatasetError(
                    f"COCO-JSON file {files[split]}: image {image.id} ({image.path}) is "
                    f"{sizes[image.path][1]}x{sizes[image.path][0]} pixels, the json says "
                    f"{image.size[1]}x{image.size[0]} (width x height); fix its width and "
                    f"height.")


def _config_name(root: str, files: dict[str, str]) -> str:
    """``<folder name>-<digest of its json files' paths, sizes, modification times>``."""
    digest = hashlib.sha256(f"{os.path.abspath(root)}\n{_VERSION}\n".encode())
    for split, path in files.items():
        stat = os.stat(path)
        digest.update(f"{split}\t{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    folder = re.sub(r"[^\w.-]", "_", os.path.basename(os.path.abspath(root))) or "root"
    return f"{folder}-{digest.hexdigest()[:16]}"


class CocoJson(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """The checked splits of a COCO-JSON folder, written as a tfds dataset."""

    name = NAME
    VERSION = tfds.core.Version(_VERSION)
    RELEASE_NOTES = {_VERSION: "First release."}

    def __init__(self, names: list[str], images: dict[str, list[_Image]], **kwargs):
        self._names, self._images = names, images
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(),
                "image/filename": tfds.features.Text(),
                "image/id": np.int64,
                "objects": tfds.features.Sequence({
                    "id": np.int64,
                    "bbox": tfds.features.BBoxFeature(),
                    "label": tfds.features.ClassLabel(names=self._names),
                    "is_crowd": np.bool_,
                }),
            }),
            description=self.__doc__,
        )

    def _split_generators(self, dl_manager):  # noqa: ARG002  (nothing to download)
        return {split: self._generate_examples(split) for split in self._images}

    def _generate_examples(self, split):
        for image in self._images[split]:
            yield image.id, {"image": image.path, "image/filename": image.file_name,
                             "image/id": image.id, "objects": image.objects}


def prepare(root: str, data_dir: str) -> tuple[tfds.core.DatasetBuilder, Catalogue]:
    """The prepared builder of the COCO-JSON folder ``root`` and its catalogue; the
    folder is checked and written on first use (once per version of its json files)."""
    files = annotation_files(root)
    catalogue = _splits(root, files)
    config = _config_name(root, files)
    path = os.path.join(data_dir, NAME, config, _VERSION)
    with _prepare_lock(f"{NAME}/{config}", data_dir):
        if not tf.io.gfile.exists(os.path.join(path, "dataset_info.json")):
            names, images = None, {}
            for split, json_path in files.items():
                split_names, images[split] = _read(root, split, json_path)
                if names is not None and split_names != names:
                    raise DatasetError(
                        f"COCO-JSON file {json_path}: its categories {split_names} are not "
                        f"those of {files[next(iter(files))]} ({names}); every split needs "
                        f"the same categories.")
                names = split_names
            _check_images(root, images, files)
            builder = CocoJson(names, images, config=tfds.core.BuilderConfig(name=config),
                               data_dir=data_dir)
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
                compute_stats=tfds.download.ComputeStatsMode.SKIP))
    return tfds.builder_from_directory(path), catalogue
