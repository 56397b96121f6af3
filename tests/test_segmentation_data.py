"""Segmentation data: a dataset serving several tasks (the embedded detection dataset's
class mask), mask folders (keras_mobile.data.mask_folder: pairs, VOC's devkit, mmseg's
ADE20K layout) with their one-line errors, tfds' scene_parse150 (the real builder,
from tiny files in its download layout), and the segmentation input pipeline
(keras_mobile.segmentation.data): shapes, determinism, resume, evaluation padding,
masks staying on their images through the augmentation."""

import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from keras_mobile import data
from keras_mobile.data import datasets, mask_folder, shapes_detection
from keras_mobile.segmentation import augment
from keras_mobile.segmentation import data as seg_data

SHAPES = shapes_detection.NAME


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- the embedded dataset: detection by default, segmentation on request ----------------

@pytest.fixture(scope="module")
def shapes_seg(detection_data_dir):
    return data.dataset_info(SHAPES, detection_data_dir, task="segmentation")


def test_a_dataset_serves_several_tasks(detection_data_dir, shapes_seg):
    default = data.dataset_info(SHAPES, detection_data_dir)
    assert default.task == "detection" and default.tasks == ("detection", "segmentation")
    assert default.num_classes == 6 and default.class_names == shapes_detection.CLASSES
    assert default.ignored_flag is None
    assert default.mask == datasets.MaskSpec("mask", 7, ("background", *shapes_detection.CLASSES))
    info = shapes_seg
    assert (info.task, info.num_classes) == ("segmentation", 7)
    assert info.class_names == ("background", "rectangle", "ellipse", "triangle", "ring", "cross",
                                "diamond")
    as_segmentation = default.for_task("segmentation")
    assert (as_segmentation.task, as_segmentation.num_classes) == ("segmentation", 7)
    assert as_segmentation.builder is default.builder
    assert info.for_task("detection").class_names == shapes_detection.CLASSES
    info.check_task("detection")
    info.check_task("segmentation")
    expected = re.escape(f"dataset {SHAPES!r} is a detection dataset (objects/bbox, "
                         f"objects/label); train it with --task=detection, not classification.")
    with pytest.raises(data.DatasetError, match=expected) as error:
        info.check_task("classification")
    _one_line(error)
    with pytest.raises(data.DatasetError, match=expected):
        data.dataset_info(SHAPES, detection_data_dir, task="classification")
    with pytest.raises(ValueError, match=r"task must be one of \['detection', 'classification', "
                       r"'segmentation'\] or None\. Received: task='segmentaton'"):
        data.dataset_info(SHAPES, detection_data_dir, task="segmentaton")


def _pipeline(info, split="validation[:24]", **kwargs):
    args = dict(training=True, image_size=64, global_batch_size=8, seed=3)
    return [tuple(t.numpy() for t in batch)
            for batch in seg_data.input_pipeline(info, split, **{**args, **kwargs})]


def test_training_batches_are_seeded_and_resume(shapes_seg):
    batches = _pipeline(shapes_seg)
    assert len(batches) == 3
    images, labels, weights = batches[0]
    assert (images.shape, images.dtype) == ((8, 64, 64, 3), np.float32)
    assert (labels.shape, labels.dtype) == ((8, 64, 64), np.int32)
    assert (weights.shape, weights.dtype) == ((8,), np.float32) and np.all(weights == 1)
    assert images.min() >= 0 and images.max() <= 255
    all_labels = np.concatenate([b[1] for b in batches])
    assert set(np.unique(all_labels)) <= set(range(7)) | {255}
    assert len(set(np.unique(all_labels)) & set(range(1, 7))) >= 5  # the objects' classes
    # 128 px images at S=64 are resized to 32..128 px: the rest of a crop is padding,
    # image 0 and label 255 (the embedded masks have no 255 of their own).
    all_images = np.concatenate([b[0] for b in batches])
    padding = all_labels == 255
    assert 0.05 < padding.mean() < 0.5 and np.all(all_images[padding] == 0)
    # Same seed: the same batches; another epoch or seed: others.
    again = _pipeline(shapes_seg)
    for a, b in zip(batches, again, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    for other in (_pipeline(shapes_seg, epoch=1), _pipeline(shapes_seg, seed=4)):
        assert not np.array_equal(other[0][0], batches[0][0])
    # A resumed run (skip_steps) continues on the next batch; two input pipelines
    # (deterministic, parallel decoding off) share each global batch.
    resumed = _pipeline(shapes_seg, skip_steps=1)
    assert len(resumed) == 2
    for a, b in zip(batches[1:], resumed, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    halves = [_pipeline(shapes_seg, pipeline_id=i, num_pipelines=2) for i in (0, 1)]
    for k, batch in enumerate(batches):
        np.testing.assert_array_equal(np.concatenate([halves[0][k][1], halves[1][k][1]]),
                                      batch[1])
    # Replica batches: the share in batches of 4.
    assert [b[0].shape[0] for b in _pipeline(shapes_seg, replica_batch_size=4)] == [4] * 6


def test_evaluation_is_every_example_once_padded(shapes_seg):
    batches = _pipeline(shapes_seg, "validation[:10]", training=False, global_batch_size=4)
    assert len(batches) == 3
    weights = np.concatenate([b[2] for b in batches])
    np.testing.assert_array_equal(weights, [1] * 10 + [0] * 2)
    labels = np.concatenate([b[1] for b in batches])
    assert np.all(labels[10:] == 255) and set(np.unique(labels[:10])) <= set(range(7))
    # The stored masks, resized by nearest neighbour (128 -> 64: every other pixel).
    stored = [ex["mask"][..., 0] for ex in tfds.as_numpy(shapes_seg.builder.as_dataset(
        split="validation[:10]"))]
    for label, mask in zip(labels[:10], stored, strict=True):  # half-pixel centres
        np.testing.assert_array_equal(label, mask[1::2, 1::2])
    images, ids = seg_data.evaluation_examples(shapes_seg, "validation", 64, 10)
    assert (images.shape, ids.shape, images.dtype, ids.dtype) == (
        (10, 64, 64, 3), (10, 64, 64), np.float32, np.int32)
    np.testing.assert_array_equal(ids, labels[:10])
    np.testing.assert_allclose(images, np.concatenate([b[0] for b in batches])[:10])
    sizes = [b[1].shape[0] for b in seg_data.evaluation_batches(shapes_seg, "validation[:10]",
                                                                 64, batch_size=4)]
    assert sizes == [4, 4, 2]  # no padding


def test_refuses_randaugment_and_other_tasks(shapes_seg, tmp_path):
    with pytest.raises(ValueError, match="randaugment does not apply to segmentation"):
        seg_data.input_pipeline(shapes_seg, "train", training=True, image_size=64,
                                global_batch_size=2, randaugment=data.RandAugment())
    folder = tmp_path / "classes"
    for split in ("train", "val"):
        for label in ("a", "b"):
            (folder / split / label).mkdir(parents=True)
            Image.new("RGB", (4, 4)).save(folder / split / label / "x.png")
    classes = data.dataset_info(str(folder), str(tmp_path / "tfds"))
    assert classes.tasks == ("classification",) and classes.mask is None
    expected = re.escape(f"dataset {str(folder)!r} is a classification dataset (label); "
                         f"train it with --task=classification, not segmentation.")
    with pytest.raises(data.DatasetError, match=expected) as error:
        seg_data.input_pipeline(classes, "train", training=True, image_size=32,
                                global_batch_size=2)
    _one_line(error)
    with pytest.raises(data.DatasetError, match=expected):
        seg_data.evaluation_batches(classes, "val", 32)
    with pytest.raises(data.DatasetError, match=r"or a mask folder \(<split>/images/"):
        data.dataset_info(str(tmp_path / "nowhere"), str(tmp_path / "tfds"))


# --- mask folders ------------------------------------------------------------------------

# A class's colour (the alignment test reads the class back from the image) and the
# colour of ignored (255) pixels; padding is black.
COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]], np.uint8)
IGNORED_COLOUR = (250, 250, 250)


def _mask(seed, height=24, width=32, classes=4):
    """Class ids in 8x8 cells (so a resized mask keeps whole regions), 255 in one cell."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, classes, (-(-height // 8), -(-width // 8))).astype(np.uint8)
    cells[rng.integers(cells.shape[0]), rng.integers(cells.shape[1])] = 255
    return np.kron(cells, np.ones((8, 8), np.uint8))[:height, :width]


def _image_of(mask):
    image = COLOURS[np.minimum(mask, 3)]
    image[mask == 255] = IGNORED_COLOUR
    return image


def _write_pair(root, split, name, mask, ext=".png", palette=False, image=None):
    os.makedirs(os.path.join(root, split, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, split, "masks"), exist_ok=True)
    Image.fromarray(_image_of(mask) if image is None else image).save(
        os.path.join(root, split, "images", name + ext))
    _save_mask(os.path.join(root, split, "masks", name + ".png"), mask, palette)


def _save_mask(path, mask, palette=False):
    if palette:  # VOC's kind: indices into colours that are no grey of the index
        image = Image.fromarray(mask, mode="P")
        colours = np.zeros((256, 3), np.uint8)
        colours[:4] = [[128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
        colours[255] = [224, 224, 192]
        image.putpalette(colours.ravel().tolist())
    else:
        image = Image.fromarray(mask, mode="L")
    image.save(path)


SPLITS = {"train": 4, "val": 2}


def _folder(root, classes=("sky", "road", "car", "sign"), splits=SPLITS):
    """A pairs folder: ``{split: {name: mask}}`` written; train/1 and val/0 as palette PNGs,
    val/1 as a JPEG image."""
    masks = {}
    for split, count in splits.items():
        masks[split] = {}
        for i in range(count):
            mask = _mask((len(split), i))
            masks[split][f"{i:03d}"] = mask
            _write_pair(root, split, f"{i:03d}", mask, ".jpg" if (split, i) == ("val", 1)
                        else ".png", palette=(split, i) in (("train", 1), ("val", 0)))
    if classes:
        with open(os.path.join(root, "classes.txt"), "w") as f:
            f.write("\n".join(classes) + "\n")
    return masks


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """(root, its masks, data dir, DatasetInfo)."""
    root = str(tmp_path_factory.mktemp("masks") / "streets")
    masks = _folder(root)
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    return root, masks, data_dir, data.dataset_info(root, data_dir)


def test_mask_folder_reads_back_exactly(folder):
    root, masks, data_dir, info = folder
    assert mask_folder.layout(root) == "pairs" and mask_folder.is_mask_folder(root)
    assert info.task == "segmentation" and info.tasks == ("segmentation",)
    assert (info.num_classes, info.class_names) == (4, ("sky", "road", "car", "sign"))
    assert info.mask == datasets.MaskSpec("mask", 4, ("sky", "road", "car", "sign"))
    assert (info.catalogue.train_split, info.catalogue.eval_split) == ("train", "val")
    assert (info.num_examples("train"), info.num_examples("val")) == (4, 2)
    for split, split_masks in masks.items():
        seen = {}
        for ex in tfds.as_numpy(info.builder.as_dataset(split=split)):
            name = os.path.splitext(os.path.basename(ex["image/filename"].decode()))[0]
            seen[name] = ex["mask"]
            assert ex["image"].shape == (24, 32, 3)
        assert sorted(seen) == sorted(split_masks)
        for name, mask in split_masks.items():  # palette PNGs too: indices, not colours
            assert seen[name].shape == (24, 32, 1) and seen[name].dtype == np.uint8
            np.testing.assert_array_equal(seen[name][..., 0], mask)
    # Evaluation at the stored size: the masks themselves, 255 kept.
    images, labels = seg_data.evaluation_examples(info, "val", 32, 5)
    assert images.shape == (2, 32, 32, 3)
    names = [os.path.basename(ex["image/filename"].decode())
             for ex in tfds.as_numpy(info.builder.as_dataset(split="val"))]
    for label, name in zip(labels, names, strict=True):
        mask = masks["val"][name[:3]]
        assert label.shape == (32, 32)  # 24 -> 32 rows: row 4k is row 3k
        np.testing.assert_array_equal(label[::4], mask[::3])
    # Prepared once, in <data_dir>/mask_folder/<folder>-<digest>/; a change: anew.
    (config,) = os.listdir(os.path.join(data_dir, "mask_folder"))
    assert config.startswith("streets-")
    data.dataset_info(root, data_dir)
    assert os.listdir(os.path.join(data_dir, "mask_folder")) == [config]


def test_mask_folder_classes_from_the_masks_and_split_names(folder, tmp_path):
    root = str(tmp_path / "plain")
    masks = _folder(root, classes=None, splits={"train": 2, "validation": 1})
    info = data.dataset_info(root, str(tmp_path / "tfds"))
    top = max(int(m[m != 255].max()) for split in masks.values() for m in split.values())
    assert info.class_names == tuple(f"class_{i}" for i in range(top + 1))
    assert (info.catalogue.train_split, info.catalogue.eval_split) == ("train", "validation")
    # A changed folder (classes.txt added) is prepared anew, with its names.
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("a\nb\nc\nd\n")
    renamed = data.dataset_info(root, str(tmp_path / "tfds"))
    assert renamed.class_names == ("a", "b", "c", "d")
    assert len(os.listdir(tmp_path / "tfds" / "mask_folder")) == 2


def _colour_check(image, label):
    """``(pixels checked, of them not of their label's colour, ignored white, ignored
    black)``: the pixels inside a region (every label up to 5 pixels away the same, more
    than a bilinear sample reaches at x3.3, and away from the crop's edges)."""
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(label, 5, constant_values=-1), (11, 11))
    inside = np.all(windows == label[..., None, None], axis=(-1, -2))
    checked = wrong = 0
    for value, colour in enumerate(COLOURS):
        where = inside & (label == value)
        checked += where.sum()
        wrong += np.sum(np.any(np.abs(image[where] - colour) > 1e-3, axis=-1))
    where = inside & (label == 255)
    white = np.all(np.abs(image[where] - IGNORED_COLOUR) <= 1e-3, axis=-1)
    black = np.all(image[where] == 0, axis=-1)
    return checked, wrong + np.sum(~white & ~black), white.sum(), black.sum()


def test_masks_stay_on_their_images_through_augmentation(folder):
    """The image's colour encodes the class: after random resize (x0.8 to x3.3), crop,
    flip and pad, every pixel inside a region still has its class's colour; ignored
    pixels of the mask stay 255 (white pixels), the padding is 255 (black pixels)."""
    _, _, _, info = folder
    totals, mirrored = np.zeros(4, int), 0
    for epoch in range(10):
        for images, labels, _ in _pipeline(info, "train", image_size=40, global_batch_size=4,
                                           epoch=epoch):
            for image, label in zip(images, labels, strict=True):
                totals += _colour_check(image, label)
                mirrored += _colour_check(image, label[:, ::-1])[1]  # a mask off its image
    checked, wrong, ignored, padded = totals
    print(dict(checked=checked, ignored=ignored, padded=padded, mirrored=mirrored))
    # Every checked pixel is right; how many are checked, ignored or padded depends on the
    # random crops (one run of the suite saw 153 ignored in 5 epochs where another saw 300+):
    # the bounds only make sure each path ran.
    assert wrong == 0
    assert checked > 3000 and ignored > 50 and padded > 50
    assert mirrored > 1000  # what the check finds where the flip misses the mask


def test_the_augmentation_is_mmsegs_recipe():
    """A 60x30 image at S=20: resized by r * 20 / 30 (the short side), r in [0.5, 2];
    cropped to at most 20x20; padded with 0 / 255; the same seed, the same result."""
    image = tf.random.stateless_uniform([30, 60, 3], (1, 2), 0, 255)
    label = tf.zeros([30, 60], tf.int32)
    for i in range(20):
        seed = tf.constant([7, i], tf.int64)
        resize_seed, _, _ = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
        ratio = float(tf.random.stateless_uniform([], resize_seed, 0.5, 2.0))
        resized, _ = augment.random_resize(image, label, resize_seed, (80.0, 20.0))
        assert resized.shape[:2] == (round(30 * ratio * 20 / 30), round(60 * ratio * 20 / 30))
        out_image, out_label = augment.train_augment(image, label, seed, 20, cat_max_ratio=None)
        assert out_image.shape == (20, 20, 3) and out_label.shape == (20, 20)
        height = min(resized.shape[0], 20)
        assert np.all(out_label.numpy()[height:] == 255) and np.all(out_image.numpy()[height:] == 0)
        assert np.all(out_label.numpy()[:height] == 0)
        again, _ = augment.train_augment(image, label, seed, 20, cat_max_ratio=None)
        np.testing.assert_array_equal(again, out_image)
    # cat_max_ratio: a crop is redrawn (up to 10 times) while one class covers 75% of it.
    # Here 5 of the 21 places of a 20x20 crop in a 20x40 mask of 30 columns of 0 and 10
    # of 1 pass: 2 of 20 first draws (seeds 0..19), 19 of 20 with the redraws.
    label = tf.concat([tf.zeros([20, 30], tf.int32), tf.ones([20, 10], tf.int32)], 1)

    def passing(cat_max_ratio):
        crops = [augment.random_crop(tf.zeros([20, 40, 3]), label, tf.constant([0, i]), 20,
                                     cat_max_ratio)[1].numpy() for i in range(20)]
        return sum(len(np.unique(c)) == 2 and np.mean(c == 0) < 0.75 for c in crops)

    assert (passing(None), passing(0.75)) == (2, 19)


def test_pascal_voc_devkit_folder(tmp_path):
    """VOCdevkit/VOC2012's layout: palette masks whose indices are the classes, 255 the
    outlines (ignored), the 21 VOC classes; tfds' voc has no masks."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    masks = {}
    for split, ids in (("train", ["2007_000032", "2007_000039"]), ("val", ["2007_000033"])):
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for k, name in enumerate(ids):
            mask = np.zeros((24, 32), np.uint8)
            mask[4:20, 8:24] = 15 + k  # person, pottedplant
            mask[4, 8:24] = 255  # the outline
            masks[name] = mask
            Image.fromarray(_image_of(mask)).save(root / "JPEGImages" / f"{name}.jpg")
            _save_mask(root / "SegmentationClass" / f"{name}.png", mask, palette=True)
    info = data.dataset_info(str(root), str(tmp_path / "tfds"))
    assert mask_folder.layout(str(root)) == "voc"
    assert info.class_names == datasets.VOC_CLASSES and info.num_classes == 21
    assert (info.catalogue.train_split, info.catalogue.eval_split) == ("train", "val")
    (label,) = seg_data.evaluation_examples(info, "val", 32, 1)[1]
    np.testing.assert_array_equal(label[::4], masks["2007_000033"][::3])
    assert set(np.unique(label)) == {0, 15, 255}


def test_ade20k_as_unzipped_is_mmsegs_ade20k(tmp_path):
    """ADEChallengeData2016 (images/training, annotations/training, objectInfo150.txt):
    150 classes, 0 ignored, v the class v - 1 (reduce_zero_label)."""
    root = tmp_path / "ADEChallengeData2016"
    stored = {}
    for split, names in (("training", ["ADE_train_00000001", "ADE_train_00000002"]),
                         ("validation", ["ADE_val_00000001"])):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for k, name in enumerate(names):
            mask = np.zeros((24, 32), np.uint8)
            mask[:, 16:] = 1 + k
            mask[12:, :8] = 150
            stored[name] = mask
            Image.fromarray(_image_of(mask % 4)).save(root / "images" / split / f"{name}.jpg")
            _save_mask(root / "annotations" / split / f"{name}.png", mask)
    (root / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n")
    (root / "sceneCategories.txt").write_text("")
    info = data.dataset_info(str(root), str(tmp_path / "tfds"))
    assert mask_folder.layout(str(root)) == "mmseg"
    assert info.num_classes == 150 and info.class_names == datasets.ADE20K_CLASSES
    assert info.mask.reduce_zero_label
    assert (info.catalogue.train_split, info.catalogue.eval_split) == ("training", "validation")
    (label,) = seg_data.evaluation_examples(info, "validation", 32, 1)[1]
    expected = np.where(stored["ADE_val_00000001"] == 0, 255,
                        stored["ADE_val_00000001"].astype(np.int32) - 1)
    np.testing.assert_array_equal(label[::4], expected[::3])
    assert set(np.unique(label)) == {0, 149, 255}


def _rewrite_mask(root, split, name, mask, **kwargs):
    _save_mask(os.path.join(root, split, "masks", name + ".png"), mask, **kwargs)


BAD = {  # case: (change to the good folder, the message)
    "image without mask": (
        lambda root: os.remove(os.path.join(root, "train", "masks", "001.png")),
        r"1 images of split 'train' have no mask \(train/masks/<name>\.png\): "
        r"train/images/001\.png;"),
    "mask without image": (
        lambda root: os.remove(os.path.join(root, "val", "images", "000.png")),
        r"1 masks of split 'val' have no image \(val/images/<name>\.jpg, \.jpeg or \.png\): "
        r"val/masks/000\.png;"),
    "other size": (
        lambda root: _rewrite_mask(root, "val", "000", np.zeros((20, 32), np.uint8)),
        r"mask val/masks/000\.png is 32x20 but image val/images/000\.png is 32x24 "
        r"\(width x height\)"),
    "label outside": (
        lambda root: _rewrite_mask(root, "train", "003", np.full((24, 32), 7, np.uint8)),
        r"mask train/masks/003\.png has label 7, outside 0\.\.3 \(classes\.txt\) and not 255 "
        r"\(ignored\); fix the mask or add the class to classes\.txt\."),
    "undecodable image": (
        lambda root: open(os.path.join(root, "train", "images", "000.png"), "w").write("x"),
        r"image train/images/000\.png cannot be decoded by TensorFlow"),
    "undecodable mask": (
        lambda root: open(os.path.join(root, "val", "masks", "000.png"), "w").write("x"),
        r"mask val/masks/000\.png cannot be read as a PNG \(UnidentifiedImageError"),
    "rgb mask": (
        lambda root: Image.new("RGB", (32, 24)).save(
            os.path.join(root, "train", "masks", "000.png")),
        r"mask train/masks/000\.png is a RGB image; a mask holds one class id per pixel"),
    "jpeg mask": (
        lambda root: Image.new("L", (32, 24)).save(
            os.path.join(root, "train", "masks", "000.png"), format="JPEG"),
        r"mask train/masks/000\.png is a JPEG file, not a PNG"),
    "no train split": (
        lambda root: shutil.rmtree(os.path.join(root, "train")),
        r"has no training split: it needs train/images/ and train/masks/, and val/ \(or "
        r"validation/, test/\) likewise; found splits \['val'\]"),
    "no evaluation split": (
        lambda root: os.rename(os.path.join(root, "val"), os.path.join(root, "dev")),
        r"has no evaluation split: .* found splits \['dev', 'train'\]"),
    "two images of a name": (
        lambda root: Image.new("RGB", (32, 24)).save(
            os.path.join(root, "train", "images", "000.jpg")),
        r"train/images/000\.jpg and train/images/000\.png have one name"),
    "classes twice": (
        lambda root: open(os.path.join(root, "classes.txt"), "w").write("a\nb\na\nc\n"),
        r"classes\.txt names \['a'\] more than once"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_mask_folder_is_one_line_naming_the_file(case, folder, tmp_path):
    root = str(tmp_path / "bad")
    shutil.copytree(folder[0], root)
    change, message = BAD[case]
    change(root)
    with pytest.raises(data.DatasetError, match=message) as error:
        data.dataset_info(root, str(tmp_path / "tfds"))
    assert _one_line(error).startswith(f"mask folder {root!r}")
    written = tmp_path / "tfds" / "mask_folder"  # checked before anything is written
    assert not written.exists() or not any(written.glob("*/1.0.0"))


# --- ADE20K in tfds: scene_parse150, the real builder from tiny files ---------------------

def test_scene_parse150_by_name(tmp_path, monkeypatch):
    """tfds' scene_parse150 reads ChallengeData2017's images.tar and
    annotations_instance.tar: red = one of 100 object categories (0: none), green = the
    instance. The pipeline reads the red channel, 0 the class "background"."""
    sets = {"training": 3, "validation": 2}
    reds = {}
    for folder, count in sets.items():
        prefix = "ADE_train" if folder == "training" else "ADE_val"
        (tmp_path / "images" / "images" / folder).mkdir(parents=True)
        (tmp_path / "annotations" / "annotations_instance" / folder).mkdir(parents=True)
        for i in range(count):
            name = f"{prefix}_{i + 1:08d}"
            red = np.zeros((24, 32), np.uint8)
            red[:, 16:] = 3 + i
            red[:4, :4] = 100
            instance = np.where(red > 0, 7 + i, 0).astype(np.uint8)
            reds[name] = red
            Image.fromarray(_image_of(red % 4)).save(
                tmp_path / "images" / "images" / folder / f"{name}.jpg")
            Image.fromarray(np.stack([red, instance, np.zeros_like(red)], -1)).save(
                tmp_path / "annotations" / "annotations_instance" / folder / f"{name}.png")

    def download_and_extract(self, urls):  # noqa: ARG001
        return {key: str(tmp_path / key) for key in urls}

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract",
                        download_and_extract)
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(data.DatasetError, match=r"dataset 'scene_parse150' is not prepared in "
                       r".*tfds build scene_parse150 --data_dir="):
        data.dataset_info("scene_parse150", data_dir)
    info = data.dataset_info("scene_parse150", data_dir, download=True)
    assert info.task == "segmentation" and info.tasks == ("segmentation",)
    assert (info.catalogue.train_split, info.catalogue.eval_split) == ("train", "test")
    assert (info.num_examples("train"), info.num_examples("test")) == (3, 2)
    assert info.num_classes == 101 and len(datasets.ADE20K_INSTANCE_CLASSES) == 100
    assert info.class_names[:4] == ("background", "bed", "windowpane", "cabinet")
    assert info.class_names[100] == "flag" and len(datasets.ADE20K_CLASSES) == 150
    assert info.mask == datasets.MaskSpec("annotation", 101, info.class_names, channel=0)
    labels = {}
    for ex, label in zip(tfds.as_numpy(info.builder.as_dataset(split="test")),
                         seg_data.evaluation_examples(info, "test", 32, 2)[1], strict=True):
        red = ex["annotation"][..., 0]
        labels[int(red[0, 31])] = label
        np.testing.assert_array_equal(label[::4], red[::3])
    assert sorted(labels) == [3, 4]
    assert set(np.unique(labels[3])) == {0, 3, 100}
    batch = next(iter(seg_data.input_pipeline(info, "train", training=True, image_size=32,
                                              global_batch_size=2)))
    assert batch[1].shape == (2, 32, 32) and set(np.unique(batch[1])) <= {0, 3, 4, 5, 100, 255}
