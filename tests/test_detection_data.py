"""Detection data beyond the embedded dataset: COCO and VOC by their tfds names (the real
tfds builders, prepared from tiny files in their download layout), a user's COCO-JSON
folder (keras_mobile.data.coco_json), crowd / difficult objects (no training targets,
COCOeval's iscrowd), and a dataset of the other task refused in one line."""

import json
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_mobile import data
from keras_mobile.data import coco_json
from keras_mobile.detection import anchors as anchors_lib
from keras_mobile.detection import training as det_training
from keras_mobile.detection.evaluation import coco_metrics

# A COCO instances file's content: category ids out of order and not contiguous.
CATEGORIES = [{"id": 7, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "cat"}]
NAMES = ("person", "cat", "dog")  # id order: 1, 3, 7 -> labels 0, 1, 2
IMAGES = {  # split: [(id, width, height)]; every size differs (it names the image)
    "train2017": [(1, 40, 30), (2, 32, 48), (3, 36, 36), (4, 50, 20)],
    "val2017": [(5, 40, 40), (6, 30, 26)],
}
ANNOTATIONS = {  # split: [(id, image_id, category_id, [x, y, w, h], iscrowd)]
    "train2017": [(10, 1, 3, [4, 3, 20, 12], 0), (11, 1, 1, [0, 0, 40, 30], 0),
                  (12, 2, 7, [8, 16, 8, 16], 1), (13, 2, 7, [2, 4, 10, 20], 0),
                  (14, 4, 3, [10, 5, 30, 10], 0)],  # image 3: none (a negative)
    "val2017": [(20, 5, 1, [5, 5, 20, 20], 0), (21, 5, 1, [20, 20, 20, 20], 1)],
}


def _coco(split, images=None, annotations=None, categories=CATEGORIES):
    return {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h}
                   for i, w, h in (IMAGES[split] if images is None else images)],
        "annotations": [{"id": a, "image_id": i, "category_id": c, "bbox": b, "iscrowd": k,
                         "area": b[2] * b[3]}
                        for a, i, c, b, k in (ANNOTATIONS[split] if annotations is None
                                              else annotations)],
        "categories": categories,
    }


def _write_split(root, split, content, json_path=None):
    """The images of ``content`` in ``root/split/`` and its json (mmdet's layout)."""
    os.makedirs(os.path.join(root, split), exist_ok=True)
    for image in content["images"]:
        pixels = np.random.default_rng(image["id"]).integers(
            0, 256, (image["height"], image["width"], 3), np.uint8)
        tf.io.write_file(os.path.join(root, split, image["file_name"]),
                         tf.io.encode_jpeg(pixels))
    _write_json(root, split, content, json_path)


def _write_json(root, split, content, json_path=None):
    json_path = json_path or os.path.join(root, "annotations", f"instances_{split}.json")
    os.makedirs(os.path.dirname(json_path), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(content, f)


def _write_folder(root, contents=None):
    contents = contents or {split: _coco(split) for split in IMAGES}
    for split, content in contents.items():
        _write_split(root, split, content)
    return str(root)


def _expected(split):
    """Per image id: (boxes normalized (ymin, xmin, ymax, xmax), labels, is_crowd)."""
    sizes = {i: (h, w) for i, w, h in IMAGES[split]}
    label = {1: 0, 3: 1, 7: 2}
    out = {i: ([], [], []) for i in sizes}
    for _, i, c, (x, y, w, h), crowd in ANNOTATIONS[split]:
        height, width = sizes[i]
        out[i][0].append([y / height, x / width, (y + h) / height, (x + w) / width])
        out[i][1].append(label[c])
        out[i][2].append(bool(crowd))
    return {i: (np.reshape(b, (-1, 4)), np.array(lab, np.int64), np.array(k, bool))
            for i, (b, lab, k) in out.items()}


def _ids(info, split):
    return [int(ex["image/id"]) for ex in info.builder.as_dataset(split=split)]


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory):
    """(a COCO-JSON folder, its prepared DatasetInfo)."""
    root = _write_folder(tmp_path_factory.mktemp("coco_json") / "my_data")
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    return root, data_dir, data.dataset_info(root, data_dir)


# --- a COCO-JSON folder --------------------------------------------------------------------

def test_coco_json_folder_is_a_tfds_detection_dataset(coco_folder):
    root, data_dir, info = coco_folder
    assert info.task == "detection" and info.ignored_flag == "is_crowd"
    assert (info.num_classes, info.class_names) == (3, NAMES)
    assert (info.catalogue.train_split, info.catalogue.eval_split) == ("train2017", "val2017")
    assert (info.num_examples("train2017"), info.num_examples("val2017")) == (4, 2)
    for split in IMAGES:
        expected = _expected(split)
        seen = set()
        for ex in info.builder.as_dataset(split=split).as_numpy_iterator():
            image_id = int(ex["image/id"])
            boxes, labels, crowd = expected[image_id]
            np.testing.assert_allclose(ex["objects"]["bbox"], boxes, atol=1e-6)
            np.testing.assert_array_equal(ex["objects"]["label"], labels)
            np.testing.assert_array_equal(ex["objects"]["is_crowd"], crowd)
            width, height = {i: (w, h) for i, w, h in IMAGES[split]}[image_id]
            assert ex["image"].shape == (height, width, 3)
            assert ex["image/filename"].decode() == f"{image_id:012d}.jpg"
            seen.add(image_id)
        assert seen == set(expected)  # image 3 and 6, without objects, are kept
    # Prepared once, in <data_dir>/coco_json/<folder>-<digest>/; a changed json: anew.
    stamp = os.path.join(data_dir, "coco_json")
    (config,) = os.listdir(stamp)
    assert config.startswith("my_data-")
    data.dataset_info(root, data_dir)
    assert os.listdir(stamp) == [config]
    other = _write_folder(os.path.join(os.path.dirname(root), "changed"))
    content = _coco("val2017", annotations=ANNOTATIONS["val2017"][:1])
    _write_split(other, "val2017", content)
    changed = data.dataset_info(other, data_dir)
    assert len(os.listdir(stamp)) == 2
    assert changed.num_examples("val2017") == 2
    counts = [len(ex["objects"]["label"]) for ex in changed.builder.as_dataset(split="val2017")]
    assert sorted(counts) == [0, 1]


def test_roboflow_layout_and_split_names(tmp_path):
    root = str(tmp_path / "export")
    for split, source in (("train", "train2017"), ("valid", "val2017")):
        _write_split(root, split, _coco(source),
                     os.path.join(root, split, "_annotations.coco.json"))
    assert coco_json.annotation_files(root) == {
        s: os.path.join(root, s, "_annotations.coco.json") for s in ("train", "valid")}
    info = data.dataset_info(root, str(tmp_path / "tfds"))
    assert (info.catalogue.train_split, info.catalogue.eval_split) == ("train", "valid")
    assert (info.num_examples("train"), info.num_examples("valid"), info.num_classes) == (4, 2, 3)


def test_detection_reads_no_crowd_and_evaluation_flags_it(coco_folder):
    _, _, info = coco_folder
    for split in IMAGES:
        expected = _expected(split)
        ids = _ids(info, split)  # the order of every reader with shuffle_files=False
        elements = list(det_training._elements(info, split, False, 0, 0).as_numpy_iterator())
        ignored = list(det_training.ignored_objects(info, split).as_numpy_iterator())
        assert len(elements) == len(ignored) == len(ids)
        for image_id, (_, boxes, labels, weight), (crowd_boxes, crowd_labels) in zip(
                ids, elements, ignored, strict=True):
            want, want_labels, crowd = expected[image_id]
            np.testing.assert_allclose(boxes, want[~crowd], atol=1e-6)
            np.testing.assert_array_equal(labels, want_labels[~crowd])
            np.testing.assert_allclose(crowd_boxes, want[crowd], atol=1e-6)
            np.testing.assert_array_equal(crowd_labels, want_labels[crowd])
            assert weight == 1.0
    # Training targets: 4 of the 5 train boxes (box 12 is a crowd); evaluation: 1 + 1 crowd.
    assert sum(len(e[2]) for e in det_training._elements(info, "train2017", True, 1, 0)) == 4
    # evaluation_batches (what evaluate reads) and ignored_objects agree image by image.
    crowds = det_training.ignored_objects(info, "val2017").as_numpy_iterator()
    by_size = {(h, w): i for i, w, h in IMAGES["val2017"]}
    for _, boxes, labels, shapes in det_training.evaluation_batches(info, "val2017", 64, 1):
        image_id = by_size[tuple(shapes[0].numpy())]
        crowd_boxes, _ = next(crowds)
        want, _, crowd = _expected("val2017")[image_id]
        np.testing.assert_allclose(crowd_boxes, want[crowd], atol=1e-6)
        np.testing.assert_allclose(boxes[0].numpy()[labels[0].numpy() >= 0], want[~crowd],
                                   atol=1e-6)


def test_coco_metrics_ignore_crowd_boxes():
    person, crowd = np.array([[5, 5, 25, 25.]]), np.array([[20, 20, 40, 40.]])
    gt_flagged = [(np.concatenate([person, crowd]), np.array([0, 0]), np.array([False, True]))]
    # A confident detection on the crowd is no false positive...
    found = [(np.concatenate([crowd, person]), np.array([0.9, 0.5]), np.array([0, 0]))]
    assert coco_metrics(gt_flagged, found, 1)["AP"] == pytest.approx(1.0)
    dropped = [(person, np.array([0]))]  # the crowd left out: that detection is one
    assert coco_metrics(dropped, found, 1)["AP"] < 0.6
    # ... and an undetected crowd is no miss.
    only_person = [(person, np.array([0.5]), np.array([0]))]
    assert coco_metrics(gt_flagged, only_person, 1)["AP"] == pytest.approx(1.0)
    as_object = [(np.concatenate([person, crowd]), np.array([0, 0]))]
    assert coco_metrics(as_object, only_person, 1)["AP"] == pytest.approx(51 / 101)


def test_evaluate_passes_crowds_to_cocoeval(coco_folder, monkeypatch):
    import keras

    from keras_mobile.detection import SSDLite, evaluation

    _, _, info = coco_folder
    inputs = keras.Input((320, 320, 3))  # a tiny backbone: P4 at stride 16, P5 at 32
    x = keras.layers.Conv2D(8, 16, strides=16, name="stem")(inputs)
    x = keras.layers.Identity(name="P4")(x)
    x = keras.layers.Conv2D(8, 2, strides=2, name="down")(x)
    model = SSDLite(keras.Model(inputs, keras.layers.Identity(name="P5")(x)), num_classes=3,
                    backbone_weights=None)
    seen = {}

    def metrics(ground_truth, detections, num_classes, image_sizes):
        seen.update(ground_truth=ground_truth, sizes=image_sizes, classes=num_classes)
        return {}

    monkeypatch.setattr(evaluation, "coco_metrics", metrics)
    evaluation.evaluate(model, info, "val2017", batch_size=1)
    assert seen["classes"] == 3 and sorted(seen["sizes"]) == [(26, 30), (40, 40)]
    by_size = dict(zip(seen["sizes"], seen["ground_truth"], strict=True))
    boxes, labels, crowd = by_size[(40, 40)]  # pixels (ymin, xmin, ymax, xmax)
    np.testing.assert_allclose(boxes, [[5, 5, 25, 25], [20, 20, 40, 40]], atol=1e-4)
    np.testing.assert_array_equal(labels, [0, 0])
    np.testing.assert_array_equal(crowd, [False, True])
    assert [len(part) for part in by_size[(26, 30)]] == [0, 0, 0]


def test_detection_input_pipeline_on_a_coco_json_folder(coco_folder):
    _, _, info = coco_folder
    anchors = anchors_lib.ssd_anchors()
    task = det_training.Detection(anchors, "ssd")
    expected = _expected("train2017")
    # Evaluation order is storage order: its targets are the json's boxes, encoded.
    (batch,) = list(task.input_pipeline(info, "train2017", training=False, image_size=320,
                                        global_batch_size=4))
    images, targets, weights = batch
    assert images.shape == (4, 320, 320, 3) and np.all(weights.numpy() == 1)
    positives = []
    for k, image_id in enumerate(_ids(info, "train2017")):
        boxes, labels, crowd = expected[image_id]
        want = task.encode_targets(tf.constant(boxes[~crowd], tf.float32),
                                   tf.constant(labels[~crowd]), 320)
        np.testing.assert_array_equal(targets["cls_targets"][k], want["cls_targets"])
        np.testing.assert_allclose(targets["box_targets"][k], want["box_targets"], atol=1e-5)
        classes = set(np.unique(targets["cls_targets"][k].numpy())) - {-1, 0}
        assert classes == {int(c) + 1 for c in labels[~crowd]}  # never the crowd's class
        positives.append(int(np.sum(targets["cls_targets"][k].numpy() > 0)))
    assert positives[_ids(info, "train2017").index(3)] == 0  # the negative image
    # Training: augmented, whole batches, classes 1..3.
    (images, targets, _), = list(task.input_pipeline(info, "train2017", training=True,
                                                     image_size=320, global_batch_size=4,
                                                     seed=1))
    assert images.shape == (4, 320, 320, 3)
    assert int(tf.reduce_max(targets["cls_targets"])) <= 3


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


BAD = {  # case: (change to the good folder, the message)
    "no json": (lambda root: os.remove(os.path.join(root, "annotations",
                                                    "instances_train2017.json")),
                r"has no training split: it needs annotations/instances_train<\.\.\.>\.json"),
    "no evaluation split": (lambda root: os.remove(os.path.join(
        root, "annotations", "instances_val2017.json")), r"has no evaluation split"),
    "missing image": (lambda root: os.remove(os.path.join(root, "train2017", "000000000002.jpg")),
                      r"instances_train2017\.json: 1 of its 4 images are missing on disk "
                      r".*: train2017/000000000002\.jpg"),
    "box outside": (lambda root: _write_split(root, "train2017", _coco(
        "train2017", annotations=[(14, 4, 3, [10, 5, 45, 10], 0)])),
        r"instances_train2017\.json: annotation id 14 has a box outside its image 4 \(50x20\)"),
    "empty box": (lambda root: _write_split(root, "train2017", _coco(
        "train2017", annotations=[(13, 2, 7, [2, 4, 0, 20], 0)])),
        r"instances_train2017\.json: annotation id 13 has a box of width or height <= 0"),
    "unknown category": (lambda root: _write_split(root, "val2017", _coco(
        "val2017", annotations=[(20, 5, 2, [5, 5, 20, 20], 0)])),
        r"instances_val2017\.json: annotation id 20 has category_id 2, which is not in "
        r"categories \(ids \[1, 3, 7\]\)"),
    "unknown image": (lambda root: _write_split(root, "val2017", _coco(
        "val2017", annotations=[(20, 9, 1, [5, 5, 20, 20], 0)])),
        r"annotation id 20 has image_id 9, which is not in images"),
    "other categories": (lambda root: _write_split(root, "val2017", _coco(
        "val2017", categories=CATEGORIES[:2])), r"instances_val2017\.json: its categories"),
    "wrong size": (lambda root: _write_json(root, "val2017", _coco(
        "val2017", images=[(5, 40, 40), (6, 31, 26)])),
        r"instances_val2017\.json: image 6 \(.*000000000006\.jpg\) is 30x26 pixels, the json "
        r"says 31x26"),
    "undecodable": (lambda root: tf.io.write_file(os.path.join(root, "val2017",
                                                               "000000000005.jpg"), b"oops"),
                    r"instances_val2017\.json: image 5 \(.*\) cannot be decoded by TensorFlow"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_coco_json_folder_is_one_line_naming_the_file(case, coco_folder, tmp_path):
    root = str(tmp_path / "bad")
    shutil.copytree(coco_folder[0], root)
    change, message = BAD[case]
    change(root)
    with pytest.raises(data.DatasetError, match=message) as error:
        data.dataset_info(root, str(tmp_path / "tfds"))
    _one_line(error)
    written = tmp_path / "tfds" / "coco_json"  # checked before anything is written
    assert not written.exists() or not any(written.glob("*/1.0.0"))


# --- the other task's dataset --------------------------------------------------------------

def test_a_dataset_of_the_other_task_is_one_line(coco_folder, tmp_path):
    _, _, info = coco_folder
    with pytest.raises(data.DatasetError, match=re.escape(
            f"dataset {info.name!r} is a detection dataset (objects/bbox, objects/label); "
            f"train it with --task=detection, not classification.")) as error:
        data.input_pipeline(info, "train2017", training=True, image_size=32,
                            global_batch_size=2)
    _one_line(error)
    # A classification run stops there, before its first step.
    from keras_mobile.training import Recipe, TrainConfig, engine

    root, data_dir, _ = coco_folder
    recipe = Recipe(source="test", batch_size=2, reference_batch_size=2, epochs=1,
                    warmup_epochs=0)
    config = TrainConfig(model="MobileNetV2", recipe=recipe, model_dir=str(tmp_path / "run"),
                         dataset=root, data_dir=data_dir, image_size=32, verbose=0,
                         model_kwargs={"alpha": 0.35})
    with pytest.raises(data.DatasetError, match="is a detection dataset"):
        engine.train(config)
    folder = tmp_path / "classes"
    for split in ("train", "val"):
        for label in ("a", "b"):
            (folder / split / label).mkdir(parents=True)
            tf.io.write_file(str(folder / split / label / "x.png"),
                             tf.io.encode_png(tf.zeros([4, 4, 3], tf.uint8)))
    classes = data.dataset_info(str(folder), str(tmp_path / "tfds"))
    assert classes.task == "classification" and classes.ignored_flag is None
    task = det_training.Detection(anchors_lib.ssd_anchors(), "ssd")
    expected = re.escape(f"dataset {str(folder)!r} is a classification dataset (label); "
                         f"train it with --task=classification, not detection.")
    with pytest.raises(data.DatasetError, match=expected) as error:
        task.input_pipeline(classes, "train", training=True, image_size=320, global_batch_size=2)
    _one_line(error)
    with pytest.raises(data.DatasetError, match=expected):
        det_training.evaluation_batches(classes, "val", 320)


# --- COCO and VOC by their tfds names (the real builders, tiny files) ----------------------

def _fake_downloads(monkeypatch, paths):
    """tfds' DownloadManager hands the builder ``paths`` instead of downloading."""
    def download_and_extract(self, urls):  # noqa: ARG001
        return {key: paths[key] for key in urls}
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract",
                        download_and_extract)


def test_coco_2017_by_name(tmp_path, monkeypatch):
    ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    categories = [{"id": i, "name": f"class{i}"} for i in ids]  # COCO's 80 ids
    root = str(tmp_path / "coco")
    for split in IMAGES:
        _write_split(root, split, _coco(split, categories=categories))
    test = _coco("val2017", categories=categories)
    del test["annotations"]
    _write_split(root, "test2017", test,
                 os.path.join(root, "annotations", "image_info_test2017.json"))
    _fake_downloads(monkeypatch, {f"{split}_{part}": root for part in ("images", "annotations")
                                  for split in ("train", "validation", "test")})
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(data.DatasetError, match=r"dataset 'coco/2017' is not prepared in .*"
                       r"tfds build coco/2017 --data_dir="):
        data.dataset_info("coco/2017", data_dir)
    info = data.dataset_info("coco/2017", data_dir, download=True)
    assert (info.catalogue.train_split, info.catalogue.eval_split) == ("train", "validation")
    assert info.num_classes == 80 and info.class_names[:3] == ("class1", "class2", "class3")
    assert info.task == "detection" and info.ignored_flag == "is_crowd"
    # tfds' labels are the categories in file (= id) order: ids 1, 3, 7 are 0, 2, 6.
    expected = _expected("val2017")
    by_size = {(h, w): i for i, w, h in IMAGES["val2017"]}
    total, flagged = 0, 0
    for (_, boxes, labels, _), (crowd_boxes, _), ex in zip(
            det_training._elements(info, "validation", False, 0, 0).as_numpy_iterator(),
            det_training.ignored_objects(info, "validation").as_numpy_iterator(),
            info.builder.as_dataset(split="validation").as_numpy_iterator(), strict=True):
        want, want_labels, crowd = expected[by_size[ex["image"].shape[:2]]]
        np.testing.assert_allclose(boxes, want[~crowd], atol=1e-6)
        np.testing.assert_array_equal(labels, np.array([0, 2, 6])[want_labels[~crowd]])
        np.testing.assert_allclose(crowd_boxes, want[crowd], atol=1e-6)
        total, flagged = total + len(labels), flagged + len(crowd_boxes)
    assert (total, flagged) == (1, 1)
    train = det_training._elements(info, "train", False, 0, 0).as_numpy_iterator()
    assert sum(len(labels) for _, _, labels, _ in train) == 4  # of 5: one crowd


def _voc_xml(width, height, objects):
    body = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, (x0, y0, x1, y1), difficult in objects)
    return (f"<annotation><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{body}</annotation>")


def test_voc_2007_by_name(tmp_path, monkeypatch):
    sets = {  # set: {image id: (width, height, [(name, (xmin, ymin, xmax, ymax), difficult)])}
        "train": {"000001": (40, 30, [("dog", (4, 3, 24, 15), 0), ("cat", (1, 1, 9, 9), 1)])},
        "val": {"000002": (32, 48, [("person", (2, 4, 12, 24), 0)]),
                "000003": (36, 36, [])},
        "test": {"000004": (50, 20, [("car", (10, 5, 40, 15), 0), ("car", (0, 0, 5, 5), 1)])},
    }
    for folder, names in (("trainval", ("train", "val")), ("test", ("test",))):
        base = tmp_path / folder / "VOCdevkit" / "VOC2007"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            (base / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(sets[name]))
            for image_id, (w, h, objects) in sets[name].items():
                tf.io.write_file(str(base / "JPEGImages" / f"{image_id}.jpg"),
                                 tf.io.encode_jpeg(tf.zeros([h, w, 3], tf.uint8)))
                (base / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(w, h, objects))
    _fake_downloads(monkeypatch, {k: str(tmp_path / k) for k in ("trainval", "test")})
    info = data.dataset_info("voc/2007", str(tmp_path / "tfds"), download=True)
    # mmdet's and the SSD paper's VOC2007 split: trainval to train, test to evaluate.
    assert (info.catalogue.train_split, info.catalogue.eval_split) == ("train+validation", "test")
    assert info.num_examples(info.catalogue.train_split) == 3
    assert info.num_classes == 20 and info.ignored_flag == "is_difficult"
    counts = {}
    for split in ("train+validation", "test"):
        elements = det_training._elements(info, split, False, 0, 0).as_numpy_iterator()
        counts[split] = sorted(info.class_names[c] for _, _, labels, _ in elements
                               for c in labels)
    assert counts == {"train+validation": ["dog", "person"], "test": ["car"]}  # no difficult
    (crowd,) = [b for b, _ in det_training.ignored_objects(info, "test").as_numpy_iterator()]
    np.testing.assert_allclose(crowd, [[0, 0, 5 / 20, 5 / 50]], atol=1e-6)
