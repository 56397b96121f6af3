"""What a segmenter model knows about its outputs: the part the Keras 3
:class:`~keras_mobile.segmentation.Segmenter` and its quantization-aware tf_keras twin
(:class:`keras_mobile.segmentation.quantize.QuantizedSegmenter`) share, as
``keras_mobile.detection.postprocess.Decoding`` is for detectors.

A neutral module: it imports neither Keras nor tf_keras (the functional class
``inference_model`` builds is the model's own), so both frameworks' classes mix it in.
"""

from __future__ import annotations


class Segmenting:
    """Mixed into a functional model whose outputs are a dict with ``"logits"``
    ``[B, H, W, C]`` (and, with an auxiliary head, ``"aux_logits"``)."""

    @property
    def num_classes(self) -> int:
        """Classes predicted per pixel (the logits' channels)."""
        return int(self.output["logits"].shape[-1])

    @property
    def image_size(self) -> tuple[int, int]:
        """The input's ``(height, width)``."""
        return tuple(int(d) for d in self.inputs[0].shape[1:3])

    @property
    def has_auxiliary_head(self) -> bool:
        """Whether the model also outputs ``"aux_logits"`` (a training-only head)."""
        return "aux_logits" in self.output

    def inference_model(self):
        """The graph from the image to ``logits`` only (the auxiliary head left out):
        what is exported, with the same layers and weights, in the model's framework."""
        inputs = self.inputs[0] if len(self.inputs) == 1 else self.inputs
        return _functional_class(self)(inputs, self.output["logits"], name=self.name)

    def predict_masks(self, images, *, batch_size: int | None = None, verbose=0):
        """Class ids ``[B, H, W]`` (uint8, or int32 beyond 256 classes) at the input size
        of ``images`` (float [0, 255] RGB, ``[B, H, W, 3]`` or one ``[H, W, 3]``)."""
        from keras_mobile.segmentation.models import predict_masks  # noqa: PLC0415

        return predict_masks(self.inference_model(), images, batch_size=batch_size,
                             verbose=verbose)


def _functional_class(model):
    """``keras.Model`` or ``tf_keras.Model``: the first ``Model`` base of ``model``'s class
    from either package."""
    for base in type(model).__mro__:
        if base.__name__ == "Model" and base.__module__.split(".")[0] in ("keras", "tf_keras"):
            return base
    raise TypeError(f"{type(model).__name__} is not a keras.Model or tf_keras.Model.")
