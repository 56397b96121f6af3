"""The embedded dataset through tfds, the input pipeline and RandAugment."""

import numpy as np
import pytest
import tensorflow as tf

from keras_mobile import data
from keras_mobile.data import augment, shapes


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


def test_image_folder_dataset(tmp_path):
    from PIL import Image

    for split, count in (("train", 6), ("val", 2)):
        for label in ("circle", "ring"):
            folder = tmp_path / "flowers" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                image = shapes.render(shapes.CLASSES.index(label), (5, i + 10 * (split == "val")))
                Image.fromarray(image).save(folder / f"{i}.png")
    info = data.dataset_info(str(tmp_path / "flowers"))
    assert info.num_classes == 2 and info.num_examples("train") == 12
    images, labels, _ = next(iter(data.input_pipeline(info, "val", training=False, image_size=48,
                                                      global_batch_size=4)))
    assert images.shape == (4, 48, 48, 3) and labels.shape == (4, 2)


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
