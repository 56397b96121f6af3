"""Detections from a detector's raw outputs: decoding and class-aware NMS, in numpy.

A keras_mobile detector returns raw ``box_encodings`` ``[B, N, 4]`` (ty, tx, th, tw)
and ``class_logits`` (``[B, N, C + 1]`` softmax with the background in column 0 for
SSDLite, ``[B, N, C]`` sigmoid for RetinaNet). :func:`decode` turns them into boxes,
scores and classes per image, as mmdetection 2.x's test pipeline does
(``AnchorHead.get_bboxes`` -> ``multiclass_nms``):

1. class scores: softmax (dropping the background column) or sigmoid;
2. boxes: ``DeltaXYWHBBoxCoder.decode`` (:func:`keras_mobile.detection.box_coder.decode`,
   ``stds = 1 / scales``, th/tw clamped to ``|log(16 / 1000)|``), clipped to the image
   when ``image_size`` is given (mmdet's ``clip_border``);
3. every (anchor, class) pair whose score is above ``score_threshold`` is a candidate
   (mmdet's ``score_thr``), then **class-aware** greedy NMS (mmdet's ``batched_nms``:
   a box suppresses only boxes of its own class whose IoU with it is above
   ``iou_threshold``), keeping the ``max_detections`` best (``max_per_img``).

This is the test setting of the EMO configs: SSDLite ``score_thr=0.02``, NMS IoU 0.45,
200 boxes (the defaults here); RetinaNet 0.05, 0.5, 100 (:data:`RETINANET_TEST`).
One difference: mmdet first keeps the ``nms_pre=1000`` best anchors of each level;
this module scores every anchor (``pre_nms_top_k`` keeps the best over all levels).

It is notebook and evaluation code, not part of the model graph: TFLite models do the
same in ``TFLite_Detection_PostProcess`` (regular, per-class NMS;
:mod:`keras_mobile.detection.export`), which neither clamps nor clips the boxes.

:class:`Detector` is the functional ``keras.Model`` that ``SSDLite`` and ``RetinaNet``
return: it carries its anchors and decoding settings and has :meth:`Detector.predict_boxes`.

Example:
    >>> det = keras_mobile.detection.SSDLite("EMO1M", num_classes=80, backbone_weights=None)
    >>> found = det.predict_boxes(images)     # one Detections per image
    >>> found[0].boxes, found[0].scores, found[0].classes
"""

from __future__ import annotations

import math
from typing import NamedTuple

import keras
import numpy as np

from keras_mobile.detection import anchors as anchors_lib
from keras_mobile.detection import box_coder

ACTIVATIONS = ("softmax", "sigmoid", None)
SSD_SCALES = box_coder.tflite_scales(box_coder.SSD_STDS)  # (10, 10, 5, 5)

# mmdet test_cfg of the EMO configs (specs/dense.md §1), as Detector keyword arguments.
SSDLITE_TEST = {"activation": "softmax", "box_stds": box_coder.SSD_STDS,
                "score_threshold": 0.02, "iou_threshold": 0.45, "max_detections": 200}
RETINANET_TEST = {"activation": "sigmoid", "box_stds": box_coder.RETINANET_STDS,
                  "score_threshold": 0.05, "iou_threshold": 0.5, "max_detections": 100}


class Detections(NamedTuple):
    """The detections of one image, best first."""

    boxes: np.ndarray  # [D, 4] float32 (ymin, xmin, ymax, xmax), the anchors' unit (pixels)
    scores: np.ndarray  # [D] float32
    classes: np.ndarray  # [D] int64, 0-based foreground classes (no background)


def class_scores(class_logits, activation: str | None = "softmax") -> np.ndarray:
    """Per-class probabilities ``[..., C]`` from the model's logits.

    Args:
        class_logits: ``[..., C + 1]`` logits with the background in column 0
            (``"softmax"``), ``[..., C]`` logits (``"sigmoid"``), or ``[..., C]`` scores
            already activated (None).
        activation: ``"softmax"``, ``"sigmoid"`` or None.
    """
    _check_activation(activation)
    x = np.asarray(class_logits, np.float32)
    if activation == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True))[..., 1:]
    if activation == "sigmoid":
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)
    return x


def decode(box_encodings, class_logits, anchors, *, activation: str | None = "softmax",
           scales=SSD_SCALES, score_threshold: float = 0.02, iou_threshold: float = 0.45,
           max_detections: int = 200, image_size=None, pre_nms_top_k: int | None = None,
           class_agnostic: bool = False) -> list[Detections]:
    """Boxes, scores and classes per image from raw detector outputs (module docstring).

    Args:
        box_encodings: ``[B, N, 4]`` (or ``[N, 4]`` for one image) (ty, tx, th, tw).
        class_logits: ``[B, N, C + 1]`` or ``[B, N, C]`` (see :func:`class_scores`).
        anchors: ``[N, 4]`` (ymin, xmin, ymax, xmax) in pixels
            (:func:`keras_mobile.detection.anchors_for`); boxes come out in their unit.
        activation: ``"softmax"`` (SSDLite: background column 0 dropped),
            ``"sigmoid"`` (RetinaNet) or None (scores already activated, ``[.., C]``).
        scales: TFLite's ``(y_scale, x_scale, h_scale, w_scale)``, ``1 / stds``:
            (10, 10, 5, 5) for SSDLite, (1, 1, 1, 1) for RetinaNet.
        score_threshold: candidates need a score above it.
        iou_threshold: NMS suppresses a box of the same class with IoU above it.
        max_detections: at most this many detections per image.
        image_size: ``(height, width)`` to clip boxes to (mmdet's ``clip_border``), or
            None (no clipping, as TFLite).
        pre_nms_top_k: keep only the best ``k`` candidates (over all levels) before NMS;
            None keeps them all.
        class_agnostic: NMS across classes (a box suppresses overlapping boxes of any
            class), as MediaPipe does for a raw 2-output model and
            ``TFLite_Detection_PostProcess``'s fast NMS; default False (mmdet's).

    Returns:
        One :class:`Detections` per image, best first.
    """
    _check_activation(activation)
    encodings = np.asarray(box_encodings, np.float32)
    single = encodings.ndim == 2
    if single:
        encodings = encodings[None]
    scores = class_scores(class_logits, activation)
    if single:
        scores = scores[None]
    anchors = np.asarray(anchors, np.float32)
    if (encodings.ndim != 3 or encodings.shape[-1] != 4 or scores.ndim != 3
            or scores.shape[:2] != encodings.shape[:2] or anchors.shape != (encodings.shape[1], 4)):
        raise ValueError(
            "box_encodings must be [B, N, 4], class_logits [B, N, classes] and anchors "
            f"[N, 4] with the same N. Received: box_encodings {np.shape(box_encodings)}, "
            f"class_logits {np.shape(class_logits)}, anchors {np.shape(anchors)}.")
    check_settings(scales, score_threshold, iou_threshold, max_detections)
    stds = tuple(1.0 / float(s) for s in scales)
    boxes = np.asarray(box_coder.decode(encodings, anchors, stds=stds), np.float32)
    if image_size is not None:
        height, width = image_size[:2]
        boxes = np.clip(boxes, 0.0, np.array([height, width, height, width], np.float32))
    return [_select(b, s, score_threshold, iou_threshold, max_detections, pre_nms_top_k,
                    class_agnostic) for b, s in zip(boxes, scores, strict=True)]


def nms(boxes, scores, classes, iou_threshold: float, max_detections: int | None = None,
        *, class_agnostic: bool = False):
    """Class-aware greedy NMS: indices of the kept boxes, best first.

    A box is kept unless a better box of the same class (of any class with
    ``class_agnostic``) overlaps it with IoU above ``iou_threshold`` (mmdet /
    torchvision ``batched_nms``). Equal scores keep the lower index first.
    """
    boxes = np.asarray(boxes, np.float64)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    classes = np.asarray(classes)
    limit = len(order) if max_detections is None else max_detections
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    keep = []
    while order.size and len(keep) < limit:
        best, rest = order[0], order[1:]
        keep.append(best)
        same = True if class_agnostic else classes[rest] == classes[best]
        top_left = np.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.maximum(bottom_right - top_left, 0), axis=1)
        union = areas[best] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        order = rest[~(same & (iou > iou_threshold))]
    return np.asarray(keep, np.int64)


def _select(boxes, scores, score_threshold, iou_threshold, max_detections, pre_nms_top_k,
            class_agnostic):
    anchor, cls = np.nonzero(scores > score_threshold)
    values = scores[anchor, cls]
    if pre_nms_top_k is not None and len(values) > pre_nms_top_k:
        top = np.argsort(-values, kind="stable")[:pre_nms_top_k]
        anchor, cls, values = anchor[top], cls[top], values[top]
    keep = nms(boxes[anchor], values, cls, iou_threshold, max_detections,
               class_agnostic=class_agnostic)
    return Detections(boxes[anchor[keep]].astype(np.float32), values[keep].astype(np.float32),
                      cls[keep].astype(np.int64))


def _check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f'activation must be "softmax", "sigmoid" or None. '
                         f"Received: activation={activation!r}.")


def check_settings(scales, score_threshold, iou_threshold, max_detections):
    """Raises a ValueError for bad :func:`decode` settings."""
    if (isinstance(scales, str) or len(scales) != 4
            or not all(isinstance(s, (int, float, np.number)) and s > 0 for s in scales)):
        raise ValueError(f"scales must be 4 positive numbers (y, x, h, w). "
                         f"Received: scales={scales!r}.")
    for key, value in (("score_threshold", score_threshold), ("iou_threshold", iou_threshold)):
        if not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number. Received: {key}={value!r}.")
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in [0, 1]. Received: "
                         f"iou_threshold={iou_threshold!r}.")
    if isinstance(max_detections, bool) or not isinstance(max_detections, int) or (
            max_detections < 1):
        raise ValueError(f"max_detections must be a positive int. "
                         f"Received: max_detections={max_detections!r}.")


# ---------------------------------------------------------------------------------------
# The model class


class Decoding:
    """What a detector model knows about its outputs, and :meth:`predict_boxes`: the part
    :class:`Detector` (Keras 3) and its quantization-aware twin
    (:class:`keras_mobile.detection.quantize.QuantizedDetector`, tf_keras) share.

    The class sets ``activation``, ``box_stds``, ``score_threshold``, ``iou_threshold``,
    ``max_detections`` (:meth:`_set_decoding`) and has ``anchors``, ``num_classes`` and
    ``image_size``.
    """

    def _set_decoding(self, activation, box_stds, score_threshold, iou_threshold,
                      max_detections):
        if activation not in ("softmax", "sigmoid"):
            raise ValueError(f'activation must be "softmax" or "sigmoid". '
                             f"Received: activation={activation!r}.")
        if isinstance(box_stds, str) or len(box_stds) != 4 or not all(
                isinstance(s, (int, float, np.number)) and s > 0 for s in box_stds):
            raise ValueError(f"box_stds must be 4 positive numbers (y, x, h, w). "
                             f"Received: box_stds={box_stds!r}.")
        box_stds = tuple(float(s) for s in box_stds)
        check_settings(box_coder.tflite_scales(box_stds), score_threshold, iou_threshold,
                       max_detections)
        return dict(activation=activation, box_stds=box_stds,
                    score_threshold=float(score_threshold), iou_threshold=float(iou_threshold),
                    max_detections=int(max_detections))

    def decoding(self) -> dict:
        """The settings as :class:`Detector` keyword arguments."""
        return dict(activation=self.activation, box_stds=tuple(self.box_stds),
                    score_threshold=self.score_threshold, iou_threshold=self.iou_threshold,
                    max_detections=self.max_detections)

    @property
    def box_scales(self) -> tuple[float, float, float, float]:
        """``(y_scale, x_scale, h_scale, w_scale)`` of ``TFLite_Detection_PostProcess``."""
        return box_coder.tflite_scales(self.box_stds)

    @property
    def image_size(self) -> tuple[int, int]:
        """The input's ``(height, width)``."""
        return tuple(int(d) for d in self.inputs[0].shape[1:3])

    def decode_settings(self, **overrides) -> dict:
        """The keyword arguments of :func:`decode` for this model's outputs."""
        settings = {"activation": self.activation, "scales": self.box_scales,
                    "score_threshold": self.score_threshold,
                    "iou_threshold": self.iou_threshold,
                    "max_detections": self.max_detections, "image_size": self.image_size}
        optional = {"pre_nms_top_k", "class_agnostic"}
        unknown = sorted(set(overrides) - set(settings) - optional)
        if unknown:
            raise TypeError(f"Unknown decode settings {unknown}; expected some of "
                            f"{sorted(set(settings) | optional)}.")
        settings.update(overrides)
        return settings

    def predict_boxes(self, images, *, batch_size: int | None = None, verbose=0,
                      **overrides) -> list[Detections]:
        """Detections per image: ``predict`` then :func:`decode` (NMS in numpy).

        Args:
            images: ``[B, H, W, 3]`` raw [0, 255] RGB at the model's input size.
            batch_size, verbose: passed to ``predict``.
            **overrides: :func:`decode` settings replacing the model's
                (``score_threshold=0.3``, ``image_size=None`` for no clipping, ...).

        Returns:
            One :class:`Detections` per image, boxes in input pixels, best first.
        """
        return predict_boxes(self, images, batch_size=batch_size, verbose=verbose,
                             **overrides)


@keras.saving.register_keras_serializable(package="keras_mobile")
class Detector(Decoding, keras.Model):
    """A functional detector (image -> ``box_encodings``, ``class_logits``) that knows how
    to decode its outputs: what ``SSDLite`` and ``RetinaNet`` return.

    It is a plain functional model (``Detector(inputs, outputs)``, the same graph,
    layers and weights; profiling, conversion and ``get_config`` / ``.keras`` saving
    work as for ``keras.Model``) with the decoding settings as attributes:

    * ``activation``: ``"softmax"`` (background column 0) or ``"sigmoid"``;
    * ``box_stds`` and ``box_scales`` (TFLite's ``1 / stds``);
    * ``score_threshold``, ``iou_threshold``, ``max_detections``: the defaults of
      :meth:`predict_boxes` (the reference's test settings);
    * ``anchors`` (read-only): ``[N, 4]`` pixel (ymin, xmin, ymax, xmax) anchors, computed
      from the model's head maps (:func:`keras_mobile.detection.anchors_for`).
    """

    def __init__(self, inputs, outputs, name=None, *, activation: str = "softmax",
                 box_stds=box_coder.SSD_STDS, score_threshold: float = 0.02,
                 iou_threshold: float = 0.45, max_detections: int = 200, **kwargs):
        settings = self._set_decoding(activation, box_stds, score_threshold, iou_threshold,
                                      max_detections)
        super().__init__(inputs, outputs, name=name, **kwargs)
        for key, value in settings.items():
            setattr(self, key, value)

    @property
    def anchors(self) -> np.ndarray:
        """``[N, 4]`` (ymin, xmin, ymax, xmax) anchors in input pixels, in output order."""
        return anchors_lib.anchors_for(self)

    @property
    def num_classes(self) -> int:
        """Foreground classes (the background column of a softmax head excluded)."""
        columns = int(self.output["class_logits"].shape[-1])
        return columns - 1 if self.activation == "softmax" else columns

    def get_config(self):
        config = super().get_config()
        config.update(activation=self.activation, box_stds=list(self.box_stds),
                      score_threshold=self.score_threshold, iou_threshold=self.iou_threshold,
                      max_detections=self.max_detections)
        return config


def predict_boxes(model, images, *, batch_size: int | None = None, verbose=0,
                  **overrides) -> list[Detections]:
    """:meth:`Detector.predict_boxes` for ``model``, a :class:`Detector`.

    A plain functional model with the same outputs (e.g. one rebuilt from an older
    config) works too when its settings are passed: ``activation=``, ``scales=``, ...
    (the defaults are SSDLite's).
    """
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[None]
    if isinstance(model, Decoding):
        settings = model.decode_settings(**overrides)
    else:
        settings = {"image_size": tuple(int(d) for d in model.inputs[0].shape[1:3]),
                    **overrides}
    outputs = model.predict(images, batch_size=batch_size, verbose=verbose)
    anchors = model.anchors if isinstance(model, Decoding) else anchors_lib.anchors_for(model)
    return decode(outputs["box_encodings"], outputs["class_logits"], anchors, **settings)
