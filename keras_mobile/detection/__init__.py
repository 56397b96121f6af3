"""Object detection heads over any keras_mobile backbone's ``P{level}`` features.

* :func:`SSDLite`, :func:`RetinaNet`: plain functional models, image -> raw
  ``box_encodings`` and ``class_logits`` (as the EMO paper's mmdet configs).
* :mod:`~keras_mobile.detection.anchors`: their anchors, as mmdet generates them
  (:func:`anchors_for` reads the map sizes from a built detector).
* :mod:`~keras_mobile.detection.box_coder`: the DeltaXYWH encode / decode.
* :mod:`~keras_mobile.detection.postprocess`: detections from raw outputs
  (:func:`decode_detections`: decoding + class-aware NMS, in numpy), the
  :class:`Detector` model class (``det.predict_boxes(images)``).
* :mod:`~keras_mobile.detection.export`: :func:`export_detector`, a ``.tflite`` file
  for MediaPipe's ObjectDetector (``TFLite_Detection_PostProcess`` or raw outputs).
* Training: :mod:`.targets` (anchor matching), :mod:`.losses`, :mod:`.augment` (SSD's),
  :mod:`.training` (:class:`Detection`, the engine's task, and ``training.train``)
  and :mod:`.evaluation` (COCO AP with pycocotools); :mod:`.quantize`
  (:func:`quantize_detector`, tfmot QAT). The last three load on first use (they bring
  the training engine, tensorflow-datasets, pycocotools and tfmot).

Anchors, the box coder and NMS are not layers of the model, so quantization and
TFLite conversion see only convolutions (``specs/dense.md`` §4).

Example:
    >>> det = keras_mobile.detection.SSDLite("EMO1M", num_classes=80, backbone_weights=None)
    >>> out = det(images)  # {"box_encodings": (B, 3234, 4), "class_logits": (B, 3234, 81)}
    >>> boxes = keras_mobile.detection.decode(out["box_encodings"],
    ...                                       keras_mobile.detection.anchors_for(det))
    >>> found = det.predict_boxes(images)  # per image: Detections(boxes, scores, classes)
"""

from keras_mobile.detection import (
    anchors,
    augment,
    box_coder,
    export,
    losses,
    postprocess,
    targets,
)
from keras_mobile.detection.anchors import (
    anchors_for,
    retinanet_anchors,
    ssd_anchors,
    to_center_normalized,
)
from keras_mobile.detection.box_coder import decode, encode
from keras_mobile.detection.export import (
    DetectionParity,
    DetectionTolerance,
    export_detector,
    measure_detection_parity,
)
from keras_mobile.detection.postprocess import Detections, Detector, predict_boxes
from keras_mobile.detection.postprocess import decode as decode_detections
from keras_mobile.detection.retinanet import RetinaNet
from keras_mobile.detection.ssd import SSDLite, ssd_feature_layers
from keras_mobile.lazy import lazy_getattr

__all__ = [
    "DetectionParity", "DetectionTolerance", "Detections", "Detector", "decode_detections",
    "export", "export_detector", "measure_detection_parity", "postprocess", "predict_boxes",
    "RetinaNet", "SSDLite", "anchors", "anchors_for", "augment", "box_coder", "decode",
    "encode", "losses", "retinanet_anchors", "ssd_anchors", "ssd_feature_layers", "targets",
    "to_center_normalized",
]

# name -> (module, attribute or None for the module itself), imported on first use.
_LAZY = {"training": ("training", None), "evaluation": ("evaluation", None),
         "quantize": ("quantize", None), "Detection": ("training", "Detection"),
         "coco_metrics": ("evaluation", "coco_metrics"),
         "QuantizedDetector": ("quantize", "QuantizedDetector"),
         "quantize_detector": ("quantize", "quantize_detector")}


__getattr__ = lazy_getattr(__name__, _LAZY)
