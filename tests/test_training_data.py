"""The embedded dataset through tfds, image folders and their checks, the input
pipeline and RandAugment."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_mobile import data
from keras_mobile.data import augment, shapes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def shapes_info(shapes_data_dir):
    return data.dataset_info(shapes.NAME, shapes_data_dir)


def test_embedded_dataset_builds_through_tfds(shapes_info):
    info = shapes_info
    assert info.builder.is_prepared() and info.num_classes == 10
    assert info.class_names == shapes.CLASSES
    assert (info.num_examples("train"), info.num_examples("validation")) == (4000, 1000)
    # Read back through tfds, the stored images are exactly the rendered ones (as a set:
    # tfds shuffles on write), with their labels.
    stored = {(image.tobytes(), int(label)) for image, label in info.builder.as_dataset(
        "validation", as_supervised=True).as_numpy_iterator()}
    rendered = {(v["image"].tobytes(), v["label"]) for _, v in shapes.examples("validation")}
    assert len(stored) == 1000 and stored == rendered
    counts = np.bincount([int(y) for _, y in info.builder.as_dataset(
        "train", as_supervised=True).as_numpy_iterator()], minlength=10)
    assert counts.tolist() == [400] * 10  # balanced


def test_rendering_is_deterministic_and_classes_differ():
    a = shapes.render(3, (1, 17))
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3)
    assert np.array_equal(a, shapes.render(3, (1, 17)))
    assert not np.array_equal(a, shapes.render(3, (1, 18)))
    # Same seed, different class: same colours and background, different geometry.
    b = shapes.render(0, (1, 17))
    assert 0 < np.mean(np.any(a != b, axis=-1)) < 0.5
    with pytest.raises(ValueError, match="split must be one of"):
        next(shapes.examples("test"))


def _first(info, **kwargs):
    args = dict(training=True, image_size=32, global_batch_size=16)
    return next(iter(data.input_pipeline(info, "train", **{**args, **kwargs})))


def test_pipeline_is_deterministic_sharded_and_resumable(shapes_info):
    images, labels, weights = _first(shapes_info)
    assert images.shape == (16, 32, 32, 3) and images.dtype == tf.float32
    assert labels.shape == (16, 10) and float(tf.reduce_sum(weights)) == 16
    assert 0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255
    again = _first(shapes_info)
    np.testing.assert_array_equal(images, again[0])
    # Two input pipelines (e.g. two workers) hold the two halves of the same global batch.
    halves = [_first(shapes_info, pipeline_id=p, num_pipelines=2)[0] for p in (0, 1)]
    np.testing.assert_array_equal(np.concatenate(halves), images)
    # A resumed epoch starts exactly at the step it left.
    fourth = list(data.input_pipeline(shapes_info, "train", training=True, image_size=32,
                                      global_batch_size=16).take(4))[3][0]
    np.testing.assert_array_equal(_first(shapes_info, skip_steps=3)[0], fourth)
    # Another epoch is another order.
    assert not np.array_equal(_first(shapes_info, epoch=1)[0], images)


def test_eval_pipeline_pads_with_zero_weights(shapes_info):
    ds = data.input_pipeline(shapes_info, "validation[:50]", training=False, image_size=64,
                             global_batch_size=16, replica_batch_size=8)
    batches = list(ds)
    assert len(batches) == 8 and all(b[0].shape[0] == 8 for b in batches)  # 64 padded rows
    weights = np.concatenate([b[2] for b in batches])
    assert weights.sum() == 50 and weights[50:].sum() == 0
    # 64 px at crop_pct 1.0: the eval image is the stored image.
    stored = next(iter(shapes_info.builder.as_dataset("validation[:1]", as_supervised=True)))[0]
    np.testing.assert_array_equal(batches[0][0][0], tf.cast(stored, tf.float32))


def test_missing_and_unknown_datasets_fail_with_the_fix(tmp_path):
    with pytest.raises(data.DatasetError, match=r"tfds build cifar10 --data_dir="):
        data.dataset_info("cifar10", str(tmp_path))
    with pytest.raises(data.DatasetError, match="manual"):
        data.dataset_info("imagenet2012", str(tmp_path))
    with pytest.raises(data.DatasetError, match="dataset must be one of"):
        data.dataset_info("cifar11", str(tmp_path))


# Each process imports TensorFlow, says "ready", waits for "go" on stdin (so all of
# them reach the preparation at the same moment), then prepares and counts.
_PREPARE = """
import sys
from keras_mobile import data
print("ready", flush=True)
sys.stdin.readline()
info = data.dataset_info("keras_mobile_shapes", sys.argv[1])
print(info.num_examples("train"), info.num_examples("validation"), flush=True)
"""


def test_processes_preparing_the_same_data_dir_at_once(tmp_path):
    """Three processes prepare one fresh data dir at once: one prepares, the others wait
    for it, then all read the same data. Without the lock this failed: measured by hand,
    2 of the 3 died with tfds' FileExistsError (Cannot rename .../incomplete...)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = [subprocess.Popen([sys.executable, "-c", _PREPARE, str(tmp_path)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.communicate()[1][-3000:]
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert out.strip().splitlines()[-1] == "4000 1000", (out, err[-3000:])
    waited = [err for _, err in results if "waiting for another process to prepare" in err]
    assert waited and f"keras_mobile_shapes in {tmp_path}" in waited[0]
    assert sorted(os.listdir(tmp_path / "keras_mobile_shapes")) == [".prepare.lock", "1.0.0"]


def test_image_folder_dataset(tmp_path):
    from PIL import Image

    for split, count in (("train", 6), ("val", 2)):
        for label in ("circle", "ring"):
            folder = tmp_path / "flowers" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                image = shapes.render(shapes.CLASSES.index(label), (5, i + 10 * (split == "val")))
                Image.fromarray(image).save(folder / f"{i}.png")
    info = data.dataset_info(str(tmp_path / "flowers"), str(tmp_path / "tfds"))
    assert info.num_classes == 2 and info.num_examples("train") == 12
    images, labels, _ = next(iter(data.input_pipeline(info, "val", training=False, image_size=48,
                                                      global_batch_size=4)))
    assert images.shape == (4, 48, 48, 3) and labels.shape == (4, 2)


def _image_folder(root, counts, classes=("circle", "ring")):
    """``root/<split>/<class>/<i>.jpg`` holding ``counts[split]`` images per class."""
    from PIL import Image

    for split, count in counts.items():
        for label in classes:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = shapes.render(shapes.CLASSES.index(label), (7, i + 100 * len(split)))
                Image.fromarray(image).save(folder / f"{i}.jpg", quality=90)
    return root


def test_image_folder_refuses_files_tensorflow_cannot_decode(tmp_path):
    """A truncated JPEG and a text file named .jpg used to end training mid-epoch in
    "Graph execution error ... jpeg::Uncompress failed", naming no file: the folder
    is refused when it is opened, naming both; the modes and sizes TensorFlow decodes
    (grayscale, RGBA, CMYK, palette, a PNG named .jpg, mixed sizes) pass."""
    from PIL import Image

    root = _image_folder(tmp_path / "pets", {"train": 3, "val": 2})
    rgb = Image.fromarray(shapes.render(1, (2, 3)))
    rgb.convert("L").save(root / "train" / "ring" / "gray.jpg")
    rgb.convert("RGBA").save(root / "train" / "ring" / "rgba.png")
    rgb.convert("CMYK").save(root / "train" / "circle" / "cmyk.jpg")
    rgb.convert("P").save(root / "val" / "circle" / "palette.png")
    rgb.resize((90, 37)).save(root / "train" / "circle" / "png_named.jpg", format="PNG")
    data_dir = str(tmp_path / "tfds")
    assert data.dataset_info(str(root), data_dir).num_examples("train") == 10
    good = (root / "train" / "circle" / "0.jpg").read_bytes()
    (root / "train" / "circle" / "truncated.jpg").write_bytes(good[:-2])  # no end marker
    (root / "val" / "ring" / "notes.jpg").write_text("not an image\n")
    with pytest.raises(data.DatasetError) as error:
        data.dataset_info(str(root), data_dir)
    message = str(error.value)
    assert "\n" not in message and "2 of its 17 image files" in message, message
    assert "train/circle/truncated.jpg (jpeg::Uncompress failed" in message, message
    assert "val/ring/notes.jpg (Unknown image file format" in message, message
    (root / "train" / "circle" / "truncated.jpg").unlink()
    (root / "val" / "ring" / "notes.jpg").unlink()
    info = data.dataset_info(str(root), data_dir)
    batches = list(data.input_pipeline(info, "train", training=True, image_size=32,
                                       global_batch_size=5))
    assert len(batches) == 2 and batches[0][0].shape == (5, 32, 32, 3)
    # A good check is remembered by names, sizes and modification times: a file
    # damaged in place after it is checked again.
    (root / "train" / "ring" / "gray.jpg").write_bytes(good[: len(good) // 2])
    with pytest.raises(data.DatasetError, match=r"1 of its 15 .* train/ring/gray\.jpg"):
        data.dataset_info(str(root), data_dir)


def test_image_folder_refuses_empty_and_untrained_classes(tmp_path):
    root = _image_folder(tmp_path / "pets", {"train": 1, "val": 2})
    (root / "train" / "dog").mkdir()
    (root / "train" / "dog" / "readme.txt").write_text("images to come")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    with pytest.raises(data.DatasetError, match=r"empty class folders .*: "
                       r"train/\.ipynb_checkpoints/, train/dog/;"):
        data.dataset_info(str(root), str(tmp_path / "tfds"))
    (root / "train" / "dog" / "readme.txt").unlink()
    (root / "train" / "dog").rmdir()
    (root / "train" / ".ipynb_checkpoints").rmdir()
    (root / "val" / "ciclre").mkdir()  # misspelt in val/ only: a class with no training image
    (root / "val" / "circle" / "0.jpg").rename(root / "val" / "ciclre" / "0.jpg")
    with pytest.raises(data.DatasetError, match=r"classes without training images: val/ciclre/"):
        data.dataset_info(str(root), str(tmp_path / "tfds"))


def test_image_folder_split_slices(tmp_path):
    """tfds' ImageFolder refused every slice ("Subsplit API not yet supported"), so
    --smoke could not read a folder; a slice larger than its split (28 images,
    train[:64]) is a SplitError naming the split and its size, for the count and
    the pipeline alike, as is a split the folder does not have."""
    root = _image_folder(tmp_path / "pets", {"train": 14, "val": 2})
    info = data.dataset_info(str(root), str(tmp_path / "tfds"))
    assert info.num_examples("train[:10]") == 10 and info.num_examples("train[50%:]+val") == 18
    pipeline = dict(training=True, image_size=32, global_batch_size=8, seed=3)
    first = next(iter(data.input_pipeline(info, "train[:16]", **pipeline)))
    again = next(iter(data.input_pipeline(info, "train[:16]", **pipeline)))  # seeded order
    np.testing.assert_array_equal(first[0], again[0])
    for call in (lambda: info.num_examples("train[:64]"),
                 lambda: data.input_pipeline(info, "train[:64]", **pipeline)):
        with pytest.raises(data.SplitError, match=r"split 'train\[:64\]' asks for more examples "
                           r"than the 28 of 'train'"):
            call()
    with pytest.raises(data.SplitError, match=r"no split 'validation' .* \['train', 'val'\]"):
        info.num_examples("validation[:32]")


def test_script_names_the_broken_image_in_one_line(tmp_path):
    """What a user of --smoke on a folder with a broken image sees: one error line
    naming the file, before any training, and no traceback."""
    root = _image_folder(tmp_path / "pets", {"train": 32, "validation": 16})
    (root / "train" / "ring" / "7.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "train.py"), "--smoke", "--noqat",
         "--export=", "--nobenchmark", "--verbose=2", f"--dataset={root}",
         f"--data_dir={tmp_path / 'tfds'}", f"--model_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert lines[-1].startswith("train.py: error: folder dataset "), proc.stderr[-3000:]
    assert "1 of its 96 image files" in lines[-1] and "train/ring/7.jpg (" in lines[-1]
    assert "Traceback" not in proc.stderr + proc.stdout and "loss" not in proc.stdout


@pytest.mark.parametrize("name, fn", augment.OPS, ids=[name for name, _ in augment.OPS])
def test_randaugment_ops_keep_shape_and_range(name, fn):
    image = tf.cast(shapes.render(2, (3, 3)), tf.float32)[:48]  # non-square
    out = fn(image, tf.constant(0.9), tf.constant(1.0))
    assert out.shape == image.shape, name
    assert 0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0001
    if name not in ("AutoContrast", "Equalize"):  # those are level-free and may be no-ops
        assert float(tf.reduce_mean(tf.abs(out - image))) > 0.5, name


def test_randaugment_policy():
    assert data.RandAugment.parse("rand-m9-mstd0.5-inc1") == data.RandAugment(9.0, 0.5, 2)
    assert data.RandAugment.parse("rand-m7-n3") == data.RandAugment(7.0, 0.5, 3)
    assert data.RandAugment.parse("none") is None
    with pytest.raises(ValueError, match="RandAugment"):
        data.RandAugment.parse("rand-x9")
    image = tf.cast(shapes.render(1, (3, 4)), tf.float32)
    policy = data.RandAugment(9.0, 0.5, 2)
    a = augment.rand_augment(image, tf.constant([1, 2], tf.int64), policy)
    b = augment.rand_augment(image, tf.constant([1, 2], tf.int64), policy)
    np.testing.assert_array_equal(a, b)
    changed = [not np.array_equal(augment.rand_augment(image, tf.constant([1, s], tf.int64),
                                                       policy), image) for s in range(12)]
    assert 6 <= sum(changed) <= 12  # each of 2 ops applies with p = 0.5: P(none) = 1/4
