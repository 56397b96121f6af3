"""Semantic segmentation heads over any keras_mobile backbone's ``P{level}`` features.

* :func:`DeepLabV3`, :func:`PSPNet` (the EMO paper's ADE20K models, mmseg's heads with
  the auxiliary FCN head) and :func:`LRASPP` (MobileNetV3's head): functional
  :class:`Segmenter` models, image -> ``{"logits": [B, H, W, C]}`` at the input size.
* ``seg.predict_masks(images)``: class ids per pixel.
* ``output_stride=16|8`` dilates a conv backbone's last stages
  (:func:`keras_mobile.features.with_output_stride`).

Training (:mod:`.training`: the engine's :class:`Segmentation` task, ``training.train``),
data (:mod:`.data`, :mod:`.augment`), evaluation (:mod:`.evaluation`: mean IoU, pixel
accuracy, Keras or ``.tflite``), export (:mod:`.export`: MediaPipe ImageSegmenter
files), QAT (:mod:`.quantize`) and the main job's report (:mod:`.report`) load on first
use.

Example:
    >>> seg = keras_mobile.segmentation.DeepLabV3(backbone="EMO1M", num_classes=150,
    ...                                          input_shape=(512, 512, 3))
    >>> masks = seg.predict_masks(images)  # [B, 512, 512] class ids
"""

from keras_mobile.lazy import lazy_getattr
from keras_mobile.segmentation import export  # registers the converter with tflite.convert
from keras_mobile.segmentation.export import (
    SegmentationParity,
    SegmentationTolerance,
    export_segmenter,
    measure_segmentation_parity,
)
from keras_mobile.segmentation.models import (
    AUX_LOSS_WEIGHT,
    IGNORE_LABEL,
    LRASPP,
    DeepLabV3,
    PSPNet,
    Segmenter,
    adaptive_average_pool,
    predict_masks,
)
from keras_mobile.segmentation.segmenting import Segmenting

__all__ = ["AUX_LOSS_WEIGHT", "DeepLabV3", "IGNORE_LABEL", "LRASPP", "PSPNet",
           "SegmentationParity", "SegmentationTolerance", "Segmenter", "Segmenting",
           "adaptive_average_pool", "export", "export_segmenter",
           "measure_segmentation_parity", "predict_masks"]

# name -> (module, attribute or None for the module itself), imported on first use.
_LAZY = {"training": ("training", None), "evaluation": ("evaluation", None),
         "data": ("data", None), "augment": ("augment", None), "report": ("report", None),
         "quantize": ("quantize", None), "Segmentation": ("training", "Segmentation"),
         "QuantizedSegmenter": ("quantize", "QuantizedSegmenter"),
         "quantize_segmenter": ("quantize", "quantize_segmenter")}


__getattr__ = lazy_getattr(__name__, _LAZY)
