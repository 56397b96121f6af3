"""Mean IoU and pixel accuracy of a segmenter, a Keras model or a ``.tflite`` file, on a
split read as evaluation reads it (:func:`keras_mobile.segmentation.data.evaluation_batches`:
every image once, resized to the model's input, labels nearest-resized, 255 ignored).

The metrics are mmseg's ``mIoU`` (over the classes present in the labels or the
predictions) and ``aAcc`` (pixel accuracy), computed at the model's input resolution
(mmseg resizes the logits back to each image's own size first; the embedded dataset's
images are at the input size, where both agree).
"""

from __future__ import annotations

import numpy as np

from keras_mobile.segmentation import data
from keras_mobile.segmentation.training import segmentation_metrics


def _masks_from(model_or_path, image_size: int):
    """``images -> class ids [B, H, W]`` for a Keras segmenter (or any model whose output,
    or its ``"logits"``, is per-pixel logits) or a ``.tflite`` path."""
    if isinstance(model_or_path, (str, bytes)) or hasattr(model_or_path, "__fspath__"):
        from keras_mobile.tflite import runtime

        it = runtime.interpreter(str(model_or_path))
        shape = tuple(it.get_input_details()[0]["shape"][1:3])
        if shape != (image_size, image_size):
            raise ValueError(f"the .tflite model takes {shape[0]}x{shape[1]} images, the "
                             f"evaluation reads {image_size}x{image_size}.")
        return lambda images: np.argmax(runtime.predict(it, images)[0], axis=-1)

    from keras_mobile.segmentation.models import predict_masks

    model = model_or_path.inference_model() if hasattr(model_or_path, "inference_model") \
        else model_or_path
    return lambda images: predict_masks(model, images, batch_size=len(images))


def confusion(predicted, labels, num_classes: int):
    """``(intersection [C], union [C], correct, valid)`` of class-id arrays (numpy; labels
    255 ignored), as :func:`keras_mobile.segmentation.training.confusion_sums`."""
    predicted, labels = np.asarray(predicted).ravel(), np.asarray(labels).ravel()
    valid = labels != data.IGNORE_LABEL
    predicted, labels = predicted[valid].astype(np.int64), labels[valid].astype(np.int64)
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f"labels hold class {labels.max()} but the model has {num_classes} "
                         f"classes.")
    hits = labels[predicted == labels]
    intersection = np.bincount(hits, minlength=num_classes).astype(np.float64)
    union = (np.bincount(labels, minlength=num_classes)
             + np.bincount(predicted, minlength=num_classes)[:num_classes] - intersection)
    return intersection, union, float(intersection.sum()), float(labels.size)


def evaluate(model_or_path, info, split: str, *, image_size: int | None = None,
             batch_size: int = 32, limit: int | None = None) -> dict:
    """``{"miou", "pixel_accuracy", "iou": [per class or None], "images"}`` of a segmenter
    (Keras, its QAT twin, or a ``.tflite`` path) on ``split`` of a segmentation dataset
    (``info``, opened with ``task="segmentation"``). ``image_size``: the model's input
    side (read from a Keras model; needed for a file only when it is not square).
    ``limit``: the first ``limit`` images only."""
    info.check_task("segmentation")
    if image_size is None:
        if hasattr(model_or_path, "inputs"):
            image_size = int(model_or_path.inputs[0].shape[1])
        else:
            from keras_mobile.tflite import runtime

            image_size = int(runtime.interpreter(str(model_or_path)).get_input_details()[0][
                "shape"][1])
    predict = _masks_from(model_or_path, image_size)
    num_classes = info.num_classes
    sums = [np.zeros(num_classes), np.zeros(num_classes), 0.0, 0.0]
    seen = 0
    for images, labels in data.evaluation_batches(info, split, image_size, batch_size):
        images, labels = images.numpy(), labels.numpy()
        if limit is not None:
            images, labels = images[:limit - seen], labels[:limit - seen]
        if not len(images):
            break
        part = confusion(predict(images), labels, num_classes)
        sums = [a + b for a, b in zip(sums, part, strict=True)]
        seen += len(images)
    return {**segmentation_metrics(*sums), "images": seen}
