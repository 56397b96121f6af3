"""The hard embedded dataset for architecture search, ``keras_mobile_shapes_hard``: cheap
checks of its generator and its tfds builder (no training)."""

import hashlib

import numpy as np
import pytest

from keras_mobile import data
from keras_mobile.data import shapes


def _digest(images) -> str:
    h = hashlib.sha256()
    for image in images:
        h.update(image.tobytes())
    return h.hexdigest()


def test_hard_rendering_is_deterministic():
    seed = shapes._HARD_SPLIT_SEED["train"]
    a = shapes.render_hard(5, (seed, 17))
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3)
    assert np.array_equal(a, shapes.render_hard(5, (seed, 17)))
    assert not np.array_equal(a, shapes.render_hard(5, (seed, 18)))
    first = [v["image"] for _, v in shapes.hard_examples("validation", 40)]
    again = [v["image"] for _, v in shapes.hard_examples("validation", 40)]
    assert _digest(first) == _digest(again)
    # Its own seeds: neither the other split's images nor the easy set's.
    train = [v["image"] for _, v in shapes.hard_examples("train", 40)]
    assert _digest(first) != _digest(train)
    easy = [v["image"] for _, v in shapes.examples("validation", 40)]
    assert not any(np.array_equal(h, e) for h, e in zip(first, easy, strict=True))
    with pytest.raises(ValueError, match="split must be one of"):
        next(shapes.hard_examples("test"))


def test_hard_examples_are_balanced_uint8_images():
    n = len(shapes.HARD_CLASSES)
    assert n == 10 and len(set(shapes.HARD_CLASSES)) == n
    # The easy set's classes but half-disk and dots; two near-confusable additions.
    assert set(shapes.HARD_CLASSES) - set(shapes.CLASSES) == {"ellipse", "rectangle"}
    # Whole splits are balanced: every class equally often.
    for split, size in shapes.SPLITS.items():
        assert size % n == 0, split
    examples = list(shapes.hard_examples("validation", 4 * n))
    assert [k for k, _ in examples] == list(range(4 * n))
    labels = [v["label"] for _, v in examples]
    assert np.bincount(labels, minlength=n).tolist() == [4] * n
    for _, v in examples:
        image = v["image"]
        assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
        assert image.std() > 0  # not blank
    # Every class's geometry is drawn: each renders a foreground (the same seed, different
    # class: only the geometry differs, so the images differ).
    seed = (shapes._HARD_SPLIT_SEED["validation"], 3)
    rendered = {shapes.render_hard(label, seed).tobytes() for label in range(n)}
    assert len(rendered) == n


def test_easy_dataset_unchanged():
    """The hard set shares the easy set's helpers; the easy set's images are the ones it
    always rendered (digests taken before the helpers were shared)."""
    assert hashlib.sha256(shapes.render(3, (1, 17)).tobytes()).hexdigest() == (
        "7f7ab40f6c9da901a5002f3ad171c57487cfa9fe5a46561e89df389d4497bd44")
    assert _digest(v["image"] for _, v in shapes.examples("validation", 20)) == (
        "fcfa5c48a38ae2f77c33b3347af89e74261c499815d36cc2cfb0da8bd3965fc2")


@pytest.fixture(scope="module")
def hard_info(tmp_path_factory):
    """Prepared once (10 to 20 s on 2 CPU cores)."""
    return data.dataset_info(shapes.HARD_NAME, data_dir=str(tmp_path_factory.mktemp("tfds")))


def test_hard_dataset_is_prepared_on_first_use(hard_info):
    info = hard_info
    assert info.builder.is_prepared()
    assert info.num_classes == 10 and info.class_names == shapes.HARD_CLASSES
    assert (info.num_examples("train"), info.num_examples("validation")) == (4000, 1000)
    assert data.DATASETS[shapes.HARD_NAME].image_size == 64
    assert isinstance(info.builder, data.KerasMobileShapesHard)
    counts = np.bincount([int(y) for _, y in info.builder.as_dataset(
        "validation", as_supervised=True).as_numpy_iterator()], minlength=10)
    assert counts.tolist() == [100] * 10
