"""Detection training: the embedded detection dataset, anchor targets, losses, SSD
augmentation, COCO evaluation, and a tiny SSDLite that learns through the shared engine.

The learning test trains the real SSDLite neck, heads and 3,234 anchors at 320x320 on a
tiny backbone written here (a strided stem and 7 depthwise-separable blocks, P4 / P5 at
strides 16 / 32: 0.6M parameters, 50M MACs), because a registered backbone is too slow
for a test on 2 CPU cores (MobileNetV2 alpha 0.35 at 320: about 15 images/s to train,
against about 60 here). The 128x128 dataset images are resized to 320, as mmdet's SSD
pipeline resizes every image.
"""

import json
import os
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mobile import data
from keras_mobile.data import shapes_detection
from keras_mobile.detection import anchors as anchors_lib
from keras_mobile.detection import augment, box_coder, losses, targets
from keras_mobile.detection import training as det_training
from keras_mobile.detection.evaluation import coco_metrics

NAME = shapes_detection.NAME


# --- the dataset ---------------------------------------------------------------------------

def test_rendering_is_deterministic_and_boxes_fit_the_mask():
    counts, sizes = [], []
    for i in range(60):
        image, boxes, labels, mask = shapes_detection.render((5, i))
        again = shapes_detection.render((5, i))
        np.testing.assert_array_equal(image, again[0])
        np.testing.assert_array_equal(boxes, again[1])
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert mask.shape == (128, 128, 1) and boxes.shape == (len(labels), 4)
        assert np.all((boxes >= 0) & (boxes <= 1))
        assert np.all(boxes[:, 2:] > boxes[:, :2])
        # The mask holds exactly the classes of the boxes (0: background)...
        assert set(np.unique(mask)) - {0} <= {int(c) + 1 for c in labels}
        for box, label in zip(boxes, labels, strict=True):
            y0, x0, y1, x1 = np.round(box * 128).astype(int)
            region = mask[y0:y1, x0:x1, 0] == label + 1
            # ... and each box is tight around pixels of its class: its border rows and
            # columns touch them unless a later object covers that side (at most 30%).
            assert region.any()
            assert region.mean() > 0.1
        counts.append(len(labels))
        sizes += list(np.sqrt(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)) * 128)
    assert min(counts) == 0 and max(counts) >= 5  # empty images and crowded ones
    assert min(sizes) < 16 and max(sizes) > 64  # small to large


def test_dataset_builds_with_tfds(detection_data_dir):
    info = data.dataset_info(NAME, detection_data_dir)
    assert (info.num_classes, info.class_names) == (6, shapes_detection.CLASSES)
    assert (info.num_examples("train"), info.num_examples("validation")) == (4000, 500)
    example = next(iter(info.builder.as_dataset(split="validation[:1]")))
    # tfds stores the examples in an order of its own: find this one's index.
    for index in range(500):
        image, boxes, labels, mask = shapes_detection.render((12, index))
        if np.array_equal(example["image"].numpy(), image):
            break
    else:
        raise AssertionError("the stored image is no rendered validation image")
    np.testing.assert_array_equal(example["mask"].numpy(), mask)
    np.testing.assert_allclose(example["objects"]["bbox"].numpy(), boxes)
    np.testing.assert_array_equal(example["objects"]["label"].numpy(), labels)


# --- targets -------------------------------------------------------------------------------

def _numpy_iou(a, b):
    a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None]
    h = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    w = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = h * w
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _mmdet_assign(anchors, boxes, pos, neg, assign_all):
    """mmdet 2.x MaxIoUAssigner, min_pos_iou 0 (the loop as written there), in numpy."""
    overlaps = _numpy_iou(boxes, anchors)  # [M, N]
    best = overlaps.max(0)
    arg = overlaps.argmax(0)
    out = np.full(len(anchors), -1)
    out[best < neg] = 0
    out[best >= pos] = arg[best >= pos] + 1
    for i in range(len(boxes)):
        if overlaps[i].max() > 0:
            if assign_all:
                out[overlaps[i] == overlaps[i].max()] = i + 1
            else:
                out[overlaps[i].argmax()] = i + 1
    return out


def test_assign_follows_max_iou_assigner():
    anchors = anchors_lib.ssd_anchors()
    boxes = np.array([[100, 100, 200, 180], [30, 40, 60, 58], [150, 150, 240, 250],
                      [10, 250, 40, 290]], np.float32)  # the last one matches no anchor >= 0.5
    labels = np.array([2, 0, 5, 1])
    got = targets.assign(anchors, boxes, labels, (320, 320))
    matched = _mmdet_assign(anchors, boxes, 0.5, 0.5, assign_all=False)
    expected = np.where(matched > 0, labels[np.maximum(matched - 1, 0)] + 1, matched)
    np.testing.assert_array_equal(got["cls_targets"].numpy(), expected)
    assert set(np.unique(got["cls_targets"])) == {0, 1, 2, 3, 6}  # every box has an anchor
    # The encodings decode back to the matched boxes.
    positive = matched > 0
    decoded = box_coder.decode(got["box_targets"].numpy()[positive], anchors[positive],
                               max_ratio=None)
    np.testing.assert_allclose(decoded, boxes[matched[positive] - 1], atol=1e-3)
    assert not got["box_targets"].numpy()[~positive].any()
    # RetinaNet: the 0.4-0.5 zone is ignored, every anchor tying a box's best is forced.
    anchors = anchors_lib.retinanet_anchors([40, 20, 10, 5, 3])
    got = targets.assign(anchors, boxes, labels, (320, 320), targets.RETINANET_MATCHING)
    matched = _mmdet_assign(anchors, boxes, 0.5, 0.4, assign_all=True)
    expected = np.where(matched > 0, labels[np.maximum(matched - 1, 0)] + 1, matched)
    np.testing.assert_array_equal(got["cls_targets"].numpy(), expected)
    assert (expected == -1).any()


def test_assign_handles_empty_padded_degenerate_and_outside_boxes():
    anchors = anchors_lib.ssd_anchors()
    empty = targets.assign(anchors, np.zeros((0, 4)), np.zeros((0,), int), (320, 320))
    assert not np.any(empty["cls_targets"]) and not np.any(empty["box_targets"])
    box = [100, 100, 200, 180]
    reference = targets.assign(anchors, [box], [3], (320, 320))
    # Padding (label -1), zero-area boxes and a box wholly outside the image change nothing.
    noisy = targets.assign(anchors, [box, [0, 0, 0, 0], [50, 60, 50, 90], [330, 10, 400, 50],
                                     [5, 5, 50, 50]], [3, 1, 2, 4, -1], (320, 320))
    for key in ("cls_targets", "box_targets"):
        np.testing.assert_array_equal(noisy[key], reference[key])
    # A box reaching outside the image is clipped to it.
    clipped = targets.assign(anchors, [[-40, 250, 60, 400]], [0], (320, 320))
    inside = targets.assign(anchors, [[0, 250, 60, 320]], [0], (320, 320))
    np.testing.assert_array_equal(clipped["cls_targets"], inside["cls_targets"])
    np.testing.assert_allclose(clipped["box_targets"], inside["box_targets"])


# --- losses --------------------------------------------------------------------------------

def test_ssd_loss_is_mmdets_with_hard_negative_mining():
    rng = np.random.default_rng(0)
    n, c = 200, 4
    cls_t = np.zeros((3, n), np.int32)
    cls_t[0, :5] = [1, 2, 3, 4, 1]  # 5 positives: 15 hard negatives
    cls_t[1, :2] = 2  # 2 positives: 6 negatives
    # image 2: no positives, so no negatives mined (mmdet)
    box_t = rng.normal(size=(3, n, 4)).astype(np.float32)
    logits = rng.normal(size=(3, n, c + 1)).astype(np.float32)
    enc = rng.normal(scale=2, size=(3, n, 4)).astype(np.float32)
    cls, box, num_pos = (v.numpy() for v in losses.ssd_losses(cls_t, box_t, logits, enc))
    ce = -np.take_along_axis(logits - np.log(np.exp(logits).sum(-1, keepdims=True)),
                             cls_t[..., None], -1)[..., 0]
    diff = np.abs(enc - box_t)
    smooth = np.where(diff < 1, 0.5 * diff ** 2, diff - 0.5).sum(-1)
    for i, pos in enumerate((5, 2, 0)):
        p = cls_t[i] > 0
        hard = np.sort(ce[i][~p])[::-1][:3 * pos].sum()
        np.testing.assert_allclose(cls[i], ce[i][p].sum() + hard, rtol=1e-5)
        np.testing.assert_allclose(box[i], smooth[i][p].sum(), rtol=1e-5)
        assert num_pos[i] == pos
    # Normalized by the batch's positives: the batch mean is mmdet's loss.
    total = losses.normalize(cls + box, num_pos).numpy().mean()
    np.testing.assert_allclose(total, (cls + box).sum() / 7, rtol=1e-5)


def test_focal_loss_and_retinanet_losses():
    rng = np.random.default_rng(1)
    cls_t = np.array([[0, 1, 3, -1, 0, 2]])
    logits = rng.normal(size=(1, 6, 3)).astype(np.float32)
    box_t = rng.normal(size=(1, 6, 4)).astype(np.float32)
    enc = rng.normal(size=(1, 6, 4)).astype(np.float32)
    cls, box, num_pos = (v.numpy() for v in losses.retinanet_losses(cls_t, box_t, logits, enc))
    p = 1 / (1 + np.exp(-logits[0]))
    onehot = np.eye(4)[np.maximum(cls_t[0], 0)][:, 1:]
    pt = np.where(onehot == 1, p, 1 - p)
    at = np.where(onehot == 1, 0.25, 0.75)
    focal = -at * (1 - pt) ** 2 * np.log(pt)
    np.testing.assert_allclose(cls[0], focal[cls_t[0] >= 0].sum(), rtol=1e-5)
    np.testing.assert_allclose(box[0], np.abs(enc - box_t)[0][cls_t[0] > 0].sum(), rtol=1e-5)
    assert num_pos[0] == 3
    # The engine's task: per-image loss over the batch's positives, loss parts as metrics.
    task = det_training.Detection(np.tile([[0.0, 0.0, 10.0, 10.0]], (6, 1)), "retinanet")
    labels = {"cls_targets": cls_t.astype(np.float32), "box_targets": box_t}
    outputs = {"class_logits": logits, "box_encodings": enc}
    np.testing.assert_allclose(task.loss(labels, outputs), [(cls[0] + box[0]) / 3], rtol=1e-5)
    sums = [float(v) for v in task.metric_sums(labels, outputs, tf.constant([1.0]))]
    np.testing.assert_allclose(sums, [-(cls[0] + box[0]) / 3, cls[0] / 3, box[0] / 3],
                               rtol=1e-5)


# --- augmentation --------------------------------------------------------------------------

def _white_box_image():
    image = np.zeros((100, 100, 3), np.float32)
    image[20:40, 30:70] = 255.0  # the box (0.2, 0.3, 0.4, 0.7)
    return image


def _extent(image, size):
    ys, xs = np.nonzero(np.asarray(image).mean(-1) > 200)
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]) / np.array(size * 2)


def test_expand_crop_flip_move_the_box_with_the_image():
    boxes = tf.constant([[0.2, 0.3, 0.4, 0.7], [0.9, 0.9, 0.95, 0.95]])
    # Expand 2x with the image at (0.5, 0.25) image sides from the canvas' corner: the
    # canvas is the window (-0.5, -0.25, 1.5, 1.75) of the image. Crop (0.2, 0.1, 0.6, 0.6)
    # of the canvas: the image window (-0.1, -0.05, 0.7, 0.95). Then flip.
    window = augment.compose(tf.constant([-0.5, -0.25, 1.5, 1.75]),
                             tf.constant([0.2, 0.1, 0.6, 0.6]))
    np.testing.assert_allclose(window, [-0.1, -0.05, 0.7, 0.95], atol=1e-6)
    image, out, labels = augment.apply_window(_white_box_image(), boxes, tf.constant([1, 2]),
                                              window, tf.constant(True), (80, 80))
    # y: (0.2 + 0.1) / 0.8 = 0.375, (0.4 + 0.1) / 0.8 = 0.625; x: 0.35, 0.75 -> flipped
    # 0.25, 0.65. The second box's centre (0.925, 0.925) leaves the window: dropped.
    np.testing.assert_allclose(out, [[0.375, 0.25, 0.625, 0.65]], atol=1e-6)
    np.testing.assert_array_equal(labels, [1])
    np.testing.assert_allclose(_extent(image, (80, 80)), out[0], atol=1e-6)
    np.testing.assert_allclose(image[0, 0], augment.MEAN, atol=1e-3)  # the canvas colour
    # Crop only, no flip: a box cut by the crop is clipped to it.
    image, out, _ = augment.apply_window(_white_box_image(), boxes[:1], tf.constant([1]),
                                         tf.constant([0.0, 0.5, 0.5, 1.0]), tf.constant(False),
                                         (50, 50))
    np.testing.assert_allclose(out, [[0.4, 0.0, 0.8, 0.4]], atol=1e-6)
    np.testing.assert_allclose(_extent(image, (50, 50)), out[0], atol=1e-6)


def test_random_ssd_augmentation_keeps_boxes_on_the_objects(monkeypatch):
    # Without the colour changes, the white box must be where its box says.
    monkeypatch.setattr(augment, "photometric", lambda image, seed: tf.cast(image, tf.float32))
    boxes = tf.constant([[0.2, 0.3, 0.4, 0.7]])
    windows = set()
    for i in range(40):
        image, out, _ = augment.ssd_augment(_white_box_image(), boxes, tf.constant([0]),
                                            tf.constant([i, 3], tf.int64), (64, 64))
        assert out.shape == (1, 4)  # a crop keeps at least one box centre
        np.testing.assert_allclose(_extent(image, (64, 64)), out[0], atol=1.5 / 64)
        windows.add(tuple(np.round(out[0].numpy(), 3)))
    assert len(windows) > 20  # it does move the box


# --- COCO evaluation -----------------------------------------------------------------------

def test_coco_metrics_known_values():
    # Medium (40x50), large (120x120) and small (20x20) objects, all found.
    gt = [(np.array([[10, 10, 50, 60], [20, 0, 140, 120.]]), np.array([0, 1])),
          (np.array([[0, 0, 20, 20.]]), np.array([0]))]
    perfect = [(boxes, np.full(len(labels), 0.9), labels) for boxes, labels in gt]
    assert coco_metrics(gt, perfect, 2) == pytest.approx(
        dict(AP=1.0, AP50=1.0, AP75=1.0, APs=1.0, APm=1.0, APl=1.0))
    # One of two objects of one class found: recall 0.5 at precision 1, so 51 of COCO's
    # 101 recall points: AP = 51 / 101.
    two = [(np.array([[0, 0, 40, 40], [50, 50, 90, 90.]]), np.array([0, 0]))]
    half = [(np.array([[0, 0, 40, 40.]]), np.array([0.8]), np.array([0]))]
    metrics = coco_metrics(two, half, 1)
    assert metrics["AP"] == pytest.approx(51 / 101) and metrics["AP50"] == pytest.approx(51 / 101)
    assert metrics["APs"] == -1  # no small ground truth (40x40 > 32^2)
    # A box shifted to IoU 0.6: found at 0.5, missed from 0.65 on.
    shifted = [(np.array([[0, 0, 40, 40], [50, 60, 90, 100.]]), np.array([0.8, 0.7]),
                np.array([0, 0]))]
    metrics = coco_metrics(two, shifted, 1)
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AP75"] == pytest.approx(51 / 101)
    # Nothing found, or the wrong class: 0.
    assert coco_metrics(two, [(np.zeros((0, 4)), np.zeros(0), np.zeros(0))], 1)["AP"] == 0
    wrong = [(two[0][0], np.array([0.9, 0.9]), np.array([1, 1]))]
    assert coco_metrics(two, wrong, 2)["AP50"] == 0


# --- the input pipeline --------------------------------------------------------------------

def test_input_pipeline_contract(detection_data_dir):
    info = data.dataset_info(NAME, detection_data_dir)
    anchors = anchors_lib.ssd_anchors()
    task = det_training.Detection(anchors, "ssd")
    kwargs = dict(image_size=320, global_batch_size=8, seed=3)
    ds = task.input_pipeline(info, "train[:32]", training=True, **kwargs)
    batches = list(ds)
    assert len(batches) == 4
    images, labels, weights = batches[0]
    assert images.shape == (8, 320, 320, 3) and images.dtype == tf.float32
    assert labels["cls_targets"].shape == (8, len(anchors))
    assert labels["box_targets"].shape == (8, len(anchors), 4)
    assert float(tf.reduce_max(images)) <= 255 and np.all(weights == 1)
    assert int(tf.reduce_max(labels["cls_targets"])) <= 6
    # Deterministic, and a resumed epoch skips exactly the steps taken.
    again = list(task.input_pipeline(info, "train[:32]", training=True, **kwargs))
    np.testing.assert_array_equal(batches[1][1]["cls_targets"], again[1][1]["cls_targets"])
    resumed = list(task.input_pipeline(info, "train[:32]", training=True, skip_steps=2,
                                       **kwargs))
    assert len(resumed) == 2
    np.testing.assert_array_equal(resumed[0][0], batches[2][0])
    # Evaluation: every example once, the last batch padded with weight-0 images.
    weights = np.concatenate([w for _, _, w in task.input_pipeline(
        info, "validation[:11]", training=False, image_size=320, global_batch_size=8)])
    np.testing.assert_array_equal(weights, [1] * 11 + [0] * 5)
    with pytest.raises(ValueError, match="randaugment does not apply to detection"):
        task.input_pipeline(info, "train[:32]", training=True,
                            randaugment=data.RandAugment.parse("rand-m9"), **kwargs)


# --- a tiny SSDLite learns -----------------------------------------------------------------

def _tiny_backbone(size=320):
    """A strided 4x4 stem and depthwise-separable blocks, P4 at stride 16, P5 at 32."""
    inputs = keras.Input((size, size, 3), name="input")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    x = keras.layers.Conv2D(32, 4, strides=4, use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_act")(x)
    blocks = ((48, 2), (48, 1), (96, 2), (96, 1), (128, 1), (160, 2), (160, 1))
    for i, (filters, strides) in enumerate(blocks, start=1):
        x = keras.layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                                         name=f"block{i}_dw")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_dw_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"block{i}_dw_act")(x)
        x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"block{i}_pw")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_pw_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"block{i}_pw_act")(x)
        if i == 5:
            x = keras.layers.Identity(name="P4")(x)
    x = keras.layers.Identity(name="P5")(x)
    return keras.Model(inputs, x, name="tiny")


@pytest.fixture(scope="module")
def trained(detection_data_dir, tmp_path_factory):
    """A tiny SSDLite trained for 3 epochs through the engine (about 80 s), with the COCO
    metrics before and after."""
    from keras_mobile.detection import SSDLite, evaluation
    from keras_mobile.training import Recipe, TrainConfig

    keras.utils.set_random_seed(0)
    info = data.dataset_info(NAME, detection_data_dir)
    model = SSDLite(_tiny_backbone(), num_classes=6, backbone_weights=None)
    start = time.perf_counter()
    # Untrained, every anchor scores about 1/7 in every class: NMS is slow, so fewer images.
    untrained = evaluation.evaluate(model, info, "validation[:32]")
    untrained_seconds = time.perf_counter() - start
    recipe = Recipe(source="test: tiny SSDLite", optimizer="adamw", learning_rate=6e-3,
                    reference_batch_size=16, batch_size=16, epochs=3, warmup_epochs=0.3,
                    weight_decay=0.0, label_smoothing=0.0, bn_momentum=0.9, qat_epochs=1,
                    qat_learning_rate=5e-4)
    config = TrainConfig(model="MobileNetV2", recipe=recipe,
                         model_dir=str(tmp_path_factory.mktemp("run")), dataset=NAME,
                         data_dir=detection_data_dir, train_split="train[:2048]",
                         eval_split=VALIDATION, verbose=0,
                         model_kwargs={"detector": "SSDLite", "backbone": "test tiny"})
    # Flip only: SSD's expand / crop slow down so short a run (they are tested above).
    task = det_training.Detection.for_model(model, augment=False)
    start = time.perf_counter()
    result = det_training.train(config, model, task=task)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    metrics = evaluation.evaluate(result.model, info, VALIDATION)
    report = dict(untrained=untrained, trained=metrics, train_seconds=train_seconds,
                  untrained_eval_seconds=untrained_seconds,
                  trained_eval_seconds=time.perf_counter() - start,
                  val_loss=[h["val_loss"] for h in result.history])
    print(json.dumps(report, indent=1))
    return dict(model=model, result=result, config=config, task=task, info=info,
                report=report)


VALIDATION = "validation[:160]"


def test_tiny_ssdlite_learns_through_the_engine(trained):
    result, report = trained["result"], trained["report"]
    history = result.history
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert os.path.exists(os.path.join(trained["config"].model_dir, "best.weights.h5"))
    assert report["untrained"]["AP50"] < 0.01
    assert report["trained"]["AP50"] > 0.3, report
    assert report["trained"]["AP"] > 0.15, report


def test_quantization_aware_fine_tune_and_int8_files_keep_the_ap(trained, tmp_path):
    """--qat for detectors: the float weights fine-tuned as the tfmot twin through the same
    engine (1 epoch of 512 images), exported to a full-integer file whose COCO AP in LiteRT
    stays close to the float model's; post-training int8 of the float model too."""
    import dataclasses

    import keras_mobile
    from keras_mobile.detection import QuantizedDetector, evaluation
    from keras_mobile.detection.report import evaluation_images

    info, float_ap = trained["info"], trained["report"]["trained"]
    config = dataclasses.replace(trained["config"], qat=True, train_split="train[:512]",
                                 model_dir=str(tmp_path / "qat"),
                                 recipe=trained["config"].recipe.qat())
    with pytest.raises(ValueError, match="pass its init_weights"):
        det_training.train(config, trained["model"], task=trained["task"])
    result = det_training.train(config, trained["model"], trained["result"].weights,
                                task=trained["task"])
    qat = result.model
    assert isinstance(qat, QuantizedDetector) and result.record["qat"] is True
    qat_ap = evaluation.evaluate(qat, info, VALIDATION)
    images = evaluation_images(info, "train[:512]", 320, 100)
    labels = list(info.class_names)
    files = {}
    for mode, model in (("qat_int8", qat), ("int8", trained["result"].model)):
        report = keras_mobile.export.export(model, str(tmp_path / f"{mode}.tflite"), mode=mode,
                                            representative_data=images,
                                            metadata={"labels": labels})
        assert sorted(name for _, name in keras_mobile.tflite.inspect(report.path).float_ops
                      ) == ["DEQUANTIZE", "DEQUANTIZE", "SOFTMAX", "TFLite_Detection_PostProcess"]
        files[mode] = evaluation.evaluate(report.path, info, VALIDATION)
    print(json.dumps({"float": float_ap, "qat_keras": qat_ap, **files}, indent=1))
    # Within 3 AP points of the float model (measured: see the printout).
    assert qat_ap["AP"] > float_ap["AP"] - 0.03
    assert files["qat_int8"]["AP"] > float_ap["AP"] - 0.03, files
    assert files["int8"]["AP"] > float_ap["AP"] - 0.03, files
    assert abs(files["qat_int8"]["AP50"] - qat_ap["AP50"]) < 0.03, files


# --- the command line ------------------------------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_script(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", "train.py"), *args],
                          capture_output=True, text=True, timeout=900, cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_train_cli_detection_smoke(detection_data_dir, tmp_path):
    """``scripts/train.py --task=detection --smoke``: SSDLite on the default backbone,
    QAT, a float32 MediaPipe file and its benchmark row, the report with the picture;
    the rerun resumes (nothing left to train)."""
    model_dir = tmp_path / "run"
    args = ("--task=detection", "--smoke", "--export=float32", f"--data_dir={detection_data_dir}",
            f"--model_dir={model_dir}", "--verbose=0")
    proc = _train_script(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((model_dir / "run.json").read_text())
    assert (run["model"], run["model_kwargs"]) == (
        "MobileNetV3Small", {"detector": "SSDLite", "backbone_kwargs": {"alpha": 0.75}})
    assert (run["image_size"], run["num_classes"]) == (320, 6)
    assert json.loads((model_dir / "qat" / "run.json").read_text())["qat"] is True
    report = (model_dir / "report.md").read_text()
    assert "# Training report: SSDLite on MobileNetV3Small" in report
    assert "| qat_int8 |" in report and "| float32 | detector_float32.tflite |" in report
    assert "![predicted boxes](detections.png)" in report
    assert (model_dir / "detections.png").stat().st_size > 10_000
    exports = {e["mode"]: e for e in json.loads((model_dir / "exports.json").read_text())}
    assert set(exports) == {"float32", "qat_int8"}
    assert exports["float32"]["error"] is None and exports["float32"]["xnnpack_partitions"] == 1
    assert set(exports["float32"]["metrics"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    rows = json.loads((model_dir / "benchmark" / "results.json").read_text())["results"]
    assert rows[0]["mode"] == "float32" and rows[0]["extra"]["task"] == "detection"
    assert rows[0]["extra"]["coco_AP"] == exports["float32"]["metrics"]["AP"]
    again = _train_script(*args, "--export=", "--nobenchmark")
    assert again.returncode == 0, again.stderr[-3000:]
    history = json.loads((model_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]  # resumed at the end: no epoch added


def test_classification_on_the_detection_dataset_is_one_line(detection_data_dir, tmp_path):
    proc = _train_script("--smoke", "--dataset=keras_mobile_shapes_detection",
                         f"--data_dir={detection_data_dir}", f"--model_dir={tmp_path / 'r'}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "train.py: error: dataset 'keras_mobile_shapes_detection' is a detection dataset "
        "(objects/bbox, objects/label); train it with --task=detection, not classification.")
