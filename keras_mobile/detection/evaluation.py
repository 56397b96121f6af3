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
truth of that size).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _xywh(boxes) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 1], b[:, 0], b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]], axis=1)


def coco_metrics(ground_truth, detections, num_classes: int,
                 image_sizes=None) -> dict[str, float]:
    """COCO box metrics.

    Args:
        ground_truth: per image, ``(boxes [M, 4], labels [M])``.
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
        for image_id, boxes, classes, scores in rows:
            for box, cls, score in zip(_xywh(boxes), np.asarray(classes).reshape(-1),
                                       scores, strict=True):
                ann = {"id": len(out) + 1, "image_id": image_id, "category_id": int(cls) + 1,
                       "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
                       "iscrowd": 0}
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

    gt = coco(annotations((i + 1, boxes, labels, [None] * len(np.asarray(labels).reshape(-1)))
                          for i, (boxes, labels) in enumerate(ground_truth)))
    dt = coco(annotations((i + 1, b, c, np.asarray(s).reshape(-1))
                          for i, (b, s, c) in enumerate(detections)))
    evaluator = COCOeval(gt, dt, "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return dict(zip(METRICS, (float(v) for v in evaluator.stats[:6]), strict=True))


def evaluate(model, info, split: str, *, max_detections: int = 100, batch_size: int = 32,
             **settings) -> dict[str, float]:
    """COCO metrics of ``model`` (an SSDLite / RetinaNet, raw outputs) on ``split`` of a
    detection dataset (``info``: :func:`keras_mobile.data.dataset_info`).

    Decoding and NMS are :func:`keras_mobile.detection.postprocess.decode` with the
    model's own settings (:meth:`~keras_mobile.detection.postprocess.Detector.decode_settings`:
    the reference's test thresholds, boxes clipped to the input), COCO's 100 detections
    per image; ``settings`` override them (``score_threshold=``, ``iou_threshold=``,
    ...). A plain functional model with the same outputs gets its kind's settings.
    """
    from keras_mobile.detection import anchors as anchors_lib
    from keras_mobile.detection import box_coder, postprocess
    from keras_mobile.detection.training import detector_kind, evaluation_batches

    settings["max_detections"] = max_detections
    if isinstance(model, postprocess.Detector):
        settings = model.decode_settings(**settings)
    else:
        test = (postprocess.SSDLITE_TEST if detector_kind(model) == "ssd"
                else postprocess.RETINANET_TEST)
        settings = {"activation": test["activation"],
                    "scales": box_coder.tflite_scales(test["box_stds"]),
                    "score_threshold": test["score_threshold"],
                    "iou_threshold": test["iou_threshold"],
                    "image_size": tuple(model.inputs[0].shape[1:3]), **settings}
    anchors = anchors_lib.anchors_for(model)
    size = np.array(model.inputs[0].shape[1:3] * 2, np.float64)
    ground_truth, detections, sizes = [], [], []
    for images, boxes, labels, shapes in evaluation_batches(info, split, int(size[0]),
                                                            batch_size):
        outputs = model(images, training=False)
        found = postprocess.decode(outputs["box_encodings"], outputs["class_logits"],
                                   anchors, **settings)
        for det, gt_boxes, gt_labels, shape in zip(found, boxes.numpy(), labels.numpy(),
                                                   shapes.numpy(), strict=True):
            # Both in the original image's pixels: COCO's area ranges are the dataset's.
            scale = np.array([shape[0], shape[1]] * 2, np.float64)
            keep = gt_labels >= 0
            ground_truth.append((gt_boxes[keep] * scale, gt_labels[keep]))
            detections.append((np.asarray(det.boxes, np.float64) / size * scale,
                               det.scores, det.classes))
            sizes.append(tuple(shape))
    return coco_metrics(ground_truth, detections, info.num_classes, sizes)
