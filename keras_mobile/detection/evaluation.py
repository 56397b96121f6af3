"""COCO box AP of a detector, with pycocotools (the metric of mmdet and the Model Garden).

* :func:`coco_metrics`: AP, AP50, AP75, APs, APm, APl from per-image detections
  and ground truth (numpy), the COCO dicts built in memory (``specs/dense.md`` §5);
* :func:`evaluate`: a detector over a split of a detection dataset: images resized
  to the model's input, raw outputs decoded and NMS'd
  (:func:`keras_mobile.detection.postprocess.decode`, the model's test settings),
  then :func:`coco_metrics` in the original images' pixels (so the small / medium /
  large areas, 32^2 and 96^2, are the dataset's own).

Boxes are ``(ymin, xmin, ymax, xmax)`` pixels; classes 0-based (COCO category
``class + 1``). The area of a ground-truth box is its box area (COCO's own uses
the mask's area). A value is -1 where COCO has nothing to measure (no ground
truth of that size). Ground truth may flag boxes iscrowd: :func:`evaluate` flags
COCO's crowds and VOC's difficult objects
(:func:`keras_mobile.detection.training.ignored_objects`), which COCOeval neither
counts as misses nor lets detections on them count as false positives (for VOC's
difficult ones close to VOC's own rule: COCOeval's crowd overlap is the
intersection over the detection's area, not IoU).
"""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _xywh(boxes) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 1], b[:, 0], b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]], axis=1)


def coco_metrics(ground_truth, detections, num_classes: int,
                 image_sizes=None) -> dict[str, float]:
    """COCO box metrics.

    Args:
        ground_truth: per image, ``(boxes [M, 4], labels [M])`` or ``(boxes, labels,
            iscrowd [M] bool)``.
        detections: per image (same order), ``(boxes [D, 4], scores [D], classes [D])``.
        num_classes: the classes (0 ... num_classes - 1).
        image_sizes: per image ``(height, width)`` (recorded in the COCO images; the
            box metrics do not use them).

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl"}`` (COCOeval's ``stats[:6]``, 100
        detections per image).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ground_truth, detections = list(ground_truth), list(detections)
    if len(ground_truth) != len(detections):
        raise ValueError(f"ground_truth and detections must cover the same images. "
                         f"Received: {len(ground_truth)} and {len(detections)} images.")
    sizes = list(image_sizes) if image_sizes is not None else [(0, 0)] * len(ground_truth)
    images = [{"id": i + 1, "height": int(h), "width": int(w)}
              for i, (h, w) in enumerate(sizes)]
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]

    def annotations(rows):
        out = []
        for image_id, boxes, classes, scores, crowd in rows:
            for box, cls, score, is_crowd in zip(_xywh(boxes), np.asarray(classes).reshape(-1),
                                                 scores, crowd, strict=True):
                ann = {"id": len(out) + 1, "image_id": image_id, "category_id": int(cls) + 1,
                       "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
                       "iscrowd": int(is_crowd)}
                if score is not None:
                    ann["score"] = float(score)
                out.append(ann)
        return out

    def coco(anns):
        api = COCO()
        api.dataset = {"images": images, "categories": categories, "annotations": anns}
        with contextlib.redirect_stdout(io.StringIO()):
            api.createIndex()
        return api

    def gt_rows():
        for i, (boxes, labels, *crowd) in enumerate(ground_truth):
            count = len(np.asarray(labels).reshape(-1))
            yield (i + 1, boxes, labels, [None] * count,
                   np.asarray(crowd[0], bool).reshape(-1) if crowd else np.zeros(count, bool))

    gt = coco(annotations(gt_rows()))
    dt = coco(annotations((i + 1, b, c, np.asarray(s).reshape(-1), np.zeros(np.size(c), bool))
                          for i, (b, s, c) in enumerate(detections)))
    evaluator = COCOeval(gt, dt, "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return dict(zip(METRICS, (float(v) for v in evaluator.stats[:6]), strict=True))


def evaluate(model, info, split: str, *, max_detections: int = 100, batch_size: int = 32,
             **settings) -> dict[str, float]:
    """COCO metrics of ``model`` on ``split`` of a detection dataset (``info``:
    :func:`keras_mobile.data.dataset_info`).

    ``model``: a detector (an SSDLite / RetinaNet :class:`~keras_mobile.detection.Detector`,
    its quantization-aware twin, or a plain functional model with the same raw outputs),
    or a ``.tflite`` detector in the NMS form
    (:func:`~keras_mobile.detection.export_detector`; a path or bytes), run in LiteRT.

    Keras decoding and NMS are :func:`keras_mobile.detection.postprocess.decode` with the
    model's own settings (:meth:`~keras_mobile.detection.postprocess.Detector.decode_settings`:
    the reference's test thresholds, boxes clipped to the input), COCO's 100 detections
    per image; ``settings`` override them (``score_threshold=``, ``iou_threshold=``,
    ...). A plain functional model with the same outputs gets its kind's settings. A
    ``.tflite`` file has its thresholds inside (``TFLite_Detection_PostProcess``): its
    best ``max_detections`` per image are scored, boxes clipped to the input.
    """
    from keras_mobile.detection.training import evaluation_batches, ignored_objects

    if isinstance(model, (str, bytes, os.PathLike)):
        if settings:
            raise TypeError(f"A .tflite detector has its NMS settings inside; received "
                            f"{sorted(settings)}.")
        predict, (height, width) = _tflite_predictor(model, max_detections)
    else:
        predict, (height, width) = _keras_predictor(model, max_detections, settings)
    size = np.array([height, width] * 2, np.float64)
    ground_truth, detections, sizes = [], [], []
    ignored = ignored_objects(info, split)  # per image, in the same order: iscrowd boxes
    ignored = ignored.as_numpy_iterator() if ignored is not None else None
    for images, boxes, labels, shapes in evaluation_batches(info, split, int(size[0]),
                                                            batch_size):
        found = predict(images.numpy())
        for det, gt_boxes, gt_labels, shape in zip(found, boxes.numpy(), labels.numpy(),
                                                   shapes.numpy(), strict=True):
            # Both in the original image's pixels: COCO's area ranges are the dataset's.
            scale = np.array([shape[0], shape[1]] * 2, np.float64)
            keep = gt_labels >= 0
            crowd_boxes, crowd_labels = next(ignored) if ignored is not None else (
                np.zeros((0, 4)), np.zeros(0, np.int64))
            ground_truth.append((np.concatenate([gt_boxes[keep], crowd_boxes]) * scale,
                                 np.concatenate([gt_labels[keep], crowd_labels]),
                                 np.arange(keep.sum() + len(crowd_labels)) >= keep.sum()))
            detections.append((np.asarray(det.boxes, np.float64) / size * scale,
                               det.scores, det.classes))
            sizes.append(tuple(shape))
    return coco_metrics(ground_truth, detections, info.num_classes, sizes)


def _keras_predictor(model, max_detections: int, settings: dict):
    from keras_mobile.detection import anchors as anchors_lib
    from keras_mobile.detection import box_coder, postprocess
    from keras_mobile.detection.training import detector_kind

    settings["max_detections"] = max_detections
    if isinstance(model, postprocess.Decoding):
        settings = model.decode_settings(**settings)
        anchors = model.anchors
    else:
        test = (postprocess.SSDLITE_TEST if detector_kind(model) == "ssd"
                else postprocess.RETINANET_TEST)
        settings = {"activation": test["activation"],
                    "scales": box_coder.tflite_scales(test["box_stds"]),
                    "score_threshold": test["score_threshold"],
                    "iou_threshold": test["iou_threshold"],
                    "image_size": tuple(model.inputs[0].shape[1:3]), **settings}
        anchors = anchors_lib.anchors_for(model)

    def predict(images):
        outputs = model(images, training=False)
        return postprocess.decode(outputs["box_encodings"], outputs["class_logits"], anchors,
                                  **settings)

    return predict, tuple(int(d) for d in model.inputs[0].shape[1:3])


def _tflite_predictor(path, max_detections: int):
    from keras_mobile.detection import postprocess
    from keras_mobile.detection.export import NMS_OUTPUTS, tflite_detections
    from keras_mobile.tflite import runtime

    it = runtime.interpreter(path)
    if len(it.get_output_details()) != len(NMS_OUTPUTS):
        raise ValueError("model must be a detector .tflite file in the NMS form (4 outputs: "
                         "export_detector(..., form='nms')). Received a file with "
                         f"{len(it.get_output_details())} outputs.")
    height, width = (int(d) for d in it.get_input_details()[0]["shape"][1:3])
    limit = np.array([height, width] * 2, np.float32)

    def predict(images):
        found = []
        for det in tflite_detections(it, images, form="nms"):
            order = np.argsort(-det.scores, kind="stable")[:max_detections]
            found.append(postprocess.Detections(np.clip(det.boxes[order], 0, limit),
                                                det.scores[order], det.classes[order]))
        return found

    return predict, (height, width)
