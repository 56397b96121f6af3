"""Range calibration: start a quantization-aware model's activation ranges at
the min/max its float graph reaches on representative data (as the TFLite
converter's post-training calibration does) within tfmot's [-6, 6] start, or at
percentiles of its values, and its weight ranges at its weights'.

tfmot starts every activation range at [-6, 6] and moves it by an exponential
moving average with decay 0.999, so a short fine-tune never gets near the real
ranges: after 124 steps they have moved 12% of the way (a ReLU6 output trained
on [-5.3, 6.0] instead of [0, 6]; a [-1, 1] input on [-5.4, 5.4]: 2 of the 8
bits lost), and until a training step the weight ranges are [-6, 6] too.
"""

from __future__ import annotations

import contextlib

import numpy as np
import tensorflow as tf

BATCH_SIZE = 32
BINS = 2048  # histogram bins over a tensor's min/max range, for percentiles


class RangeObserver:
    """Stands in for fake quantization while calibrating: passes each tensor
    through unchanged (the float graph is calibrated, as by the converter) and
    widens its range variables to the tensor's min/max, 0 included, within
    ``[-limit, limit]`` for the ranges that tfmot starts there (``limit=None``:
    unbounded). Fixed ranges (EMO's softmax output, tfmot ``FixedQuantizer``)
    still fake-quantize.

    After :meth:`start_counting`, a second pass histograms each tensor over
    the range the first pass found instead, and :meth:`set_percentiles` then
    sets the range from those counts. The input's range (tfmot's all-values
    quantizer) and per-channel ranges stay min/max."""

    def __init__(self, limit: float | None = None):
        self.limit = limit
        self.ranges: dict[int, tuple] = {}  # id(variable) -> (min_var | None, max_var)
        self.counts: dict | None = None  # id(max_var) -> histogram, in the counting pass
        self._grids: dict[int, tuple] = {}  # id(max_var) -> tfmot's symmetric grid, if any

    def observe(self, inputs, min_var, max_var, *, per_channel=False, symmetric=False,
                narrow_range=False, num_bits=8, bounded=True):
        """tfmot's moving-average and all-values quantizers (asymmetric, or
        symmetric with tfmot's ``[-128 s, 127 s]`` / narrow ``[-127 s, 127 s]`` grid);
        ``bounded``: the range starts at ``[-limit, limit]`` in tfmot."""
        if self.counts is not None:
            if bounded and not per_channel:
                self._count(inputs, min_var, max_var)
                if symmetric:
                    self._grids[id(max_var)] = (narrow_range, num_bits)
            return inputs
        axes = list(range(inputs.shape.rank - 1)) if per_channel else None
        low = tf.minimum(tf.reduce_min(inputs, axis=axes), 0.0)
        high = tf.maximum(tf.reduce_max(inputs, axis=axes), 0.0)
        if bounded and self.limit is not None:
            low, high = tf.maximum(low, -self.limit), tf.minimum(high, self.limit)
        if symmetric:
            low, high = _symmetric(low, high, narrow_range, num_bits)
        self._widen(min_var, low, max_var, high)
        return inputs

    def observe_absolute(self, inputs, max_var):
        """keras_mobile's :class:`~keras_mobile.quantization.configs.SymmetricQuantizer`
        (one variable: ``max |x|``, which starts at ``limit``)."""
        if self.counts is not None:
            self._count(tf.abs(inputs), None, max_var)
            return inputs
        bound = tf.reduce_max(tf.abs(inputs))
        if self.limit is not None:
            bound = tf.minimum(bound, self.limit)
        self._widen(None, None, max_var, bound)
        return inputs

    def _widen(self, min_var, low, max_var, high):
        self.ranges[id(max_var)] = (min_var, max_var)
        if min_var is not None:
            min_var.assign(tf.minimum(min_var, low))
        max_var.assign(tf.maximum(max_var, high))

    def start_counting(self):
        """Start the counting pass: from here on, each observed tensor adds its
        values to a histogram of ``BINS`` bins over its range (values outside it
        count in the end bins)."""
        self.counts = {key: tf.Variable(tf.zeros(BINS, tf.int64), trainable=False)
                       for key in self.ranges}

    def _count(self, inputs, min_var, max_var):
        low = tf.constant(0.0) if min_var is None else tf.identity(min_var)
        high = tf.maximum(tf.identity(max_var), low + 1e-6)  # an all-zero tensor: one bin
        self.counts[id(max_var)].assign_add(tf.histogram_fixed_width(
            inputs, tf.stack([low, high]), nbins=BINS, dtype=tf.int64))

    def set_percentiles(self, percentile: float):
        """Each counted range to ``[the (100 - percentile)th, the percentile-th]``
        percentile of its tensor's values (0 included; ``[0, the percentile-th of
        |x|]`` for a range kept as ``max |x|``), to within one bin."""
        for key, counts in self.counts.items():
            counts = counts.numpy()
            if not counts.any():  # not counted: the input's or a per-channel range
                continue
            min_var, max_var = self.ranges[key]
            cumulative = np.cumsum(counts) / counts.sum()
            start = 0.0 if min_var is None else float(min_var.numpy())
            stop = float(max_var.numpy())
            step = (stop - start) / BINS
            # The upper edge of the bin that reaches the percentile; the lower
            # edge of the first bin above the low percentile.
            high = start + step * (np.searchsorted(cumulative, percentile / 100) + 1)
            high = min(max(high, 0.0), stop)
            if min_var is None:
                max_var.assign(high)
                continue
            low = start + step * np.searchsorted(cumulative, 1 - percentile / 100, "right")
            low = min(low, 0.0)
            if key in self._grids:
                low, high = (float(v) for v in _symmetric(low, high, *self._grids[key]))
            min_var.assign(low)
            max_var.assign(high)
        self.counts = None

    def reset(self):
        """Every observed range to [0, 0]: the running min/max then spans the data and 0."""
        for min_var, max_var in self.ranges.values():
            for var in (min_var, max_var):
                if var is not None:
                    var.assign(np.zeros(var.shape, var.dtype.as_numpy_dtype))


def _symmetric(low, high, narrow_range: bool, num_bits: int):
    """As tfmot's quant_ops: the wider side sets both."""
    ratio = -1.0 if narrow_range else -((1 << num_bits) - 2) / (1 << num_bits)
    return tf.minimum(low, high / ratio), tf.maximum(high, low * ratio)


@contextlib.contextmanager
def observing(observer: RangeObserver):
    """Routes tfmot's range quantizers and keras_mobile's symmetric quantizer to
    ``observer`` inside the block (through
    :func:`~keras_mobile.quantization.tfmot_adapter.observing_range_quantizers`:
    tfmot has no calibration hook)."""
    from keras_mobile.quantization import configs, tfmot_adapter  # noqa: PLC0415  (tfmot)

    with tfmot_adapter.observing_range_quantizers(observer.observe):
        configs.SymmetricQuantizer.observer = observer
        try:
            yield observer
        finally:
            configs.SymmetricQuantizer.observer = None


def calibration_images(representative_data, num_calibration_samples: int, shape) -> np.ndarray:
    """The first ``num_calibration_samples`` images of ``representative_data``.

    Raises:
        ValueError: a bad count, or no images of ``shape``.
    """
    from keras_mobile.data.samples import as_images, check_count  # noqa: PLC0415

    check_count("num_calibration_samples", num_calibration_samples)
    if representative_data is None:
        raise ValueError("representative_data must hold images to calibrate on. "
                         "Received: representative_data=None.")
    return as_images(representative_data, num_calibration_samples, tuple(shape))


def calibrate(qat_model, representative_data, num_calibration_samples: int = 100,
              limit: float | None = 6.0, percentile: float | None = None) -> dict:
    """Sets every activation range of a quantization-aware model (from
    :func:`~keras_mobile.quantization.quantize_model`) to the min/max its float
    graph reaches on ``representative_data``, 0 included, within tfmot's
    starting range ``[-limit, limit]``, in inference mode (BatchNorm's moving
    statistics, no dropout). The input's range (tfmot starts it at [0, 0]) is
    the data's min/max.

    Calibration so only tightens tfmot's [-6, 6] start: ranges of small
    tensors (a [-1, 1] input scaling, a ReLU6) get their full 8 bits, while
    tensors that reach hundreds stay clipped at 6 as tfmot would clip them.
    Unbounded min/max (``limit=None``, what post-training calibration does)
    puts MobileNetV3Small's squeeze-excite logits on [-332, 520], where the
    hard-sigmoid gate after them only tells [-3, 3] apart (measured: QAT int8
    top-1 63.2% from tfmot's start, 47.6% from unbounded ranges, 64.5% within
    [-6, 6], on the embedded dataset).

    With ``percentile`` (e.g. 99.99), each range is then narrowed to that
    percentile of its tensor's values (and the low one to the
    ``100 - percentile``-th), from a histogram over the min/max range
    (``BINS`` bins; a second pass over the images): a few outliers no longer
    spread the int8 steps. ``keras_mobile.quantization.post_training_graph(...,
    calibration_method="percentile")`` (export mode ``"int8_percentile"``)
    calibrates so, without ``limit``.

    Weight ranges are set from the weights, as a training step sets them
    (before one, they are tfmot's initial [-6, 6]). Fine-tuning then moves the
    activation ranges on from here by tfmot's moving average.

    Args:
        qat_model: a tf_keras model with tfmot quantizers.
        representative_data: images of the model's input size (an array, a
            ``tf.data.Dataset``, an iterable of images or ``(images, labels)``;
            ``keras_mobile.data.samples.as_images``).
        num_calibration_samples: how many images of ``representative_data`` to use.
        limit: bound of the ranges tfmot starts at ``[-limit, limit]`` (6.0);
            None for plain min/max.
        percentile: None (min/max) or the percentile, in (50, 100], that sets
            each range's upper end (``100 - percentile`` its lower end).

    Returns:
        ``{range variable name: its value}`` for every calibrated activation
        range (weight ranges are set too, not listed).

    Raises:
        ValueError: ``qat_model`` has no activation ranges (not quantization-aware),
            ``percentile`` is out of (50, 100], or ``representative_data`` does
            not hold images of its input shape.
    """
    if percentile is not None and not (isinstance(percentile, (int, float))
                                       and 50 < percentile <= 100):
        raise ValueError(f"percentile must be None or a number in (50, 100]. "
                         f"Received: percentile={percentile!r}")
    shape = tuple(qat_model.input_shape[1:])
    images = calibration_images(representative_data, num_calibration_samples, shape)
    observer = RangeObserver(limit)
    # Tracing alone (no execution) finds the ranges, so that they start from [0, 0].
    forward = _traced(qat_model, shape, observer)
    if not observer.ranges:
        raise ValueError(f"{qat_model.name!r} has no activation ranges to calibrate: pass "
                         "a model from keras_mobile.quantization.quantize_model.")
    observer.reset()
    _run(forward, images)
    if percentile is not None:
        observer.start_counting()
        _run(_traced(qat_model, shape, observer), images)
        observer.set_percentiles(percentile)
    return {var.name: var.numpy() for pair in observer.ranges.values()
            for var in pair if var is not None}


def _traced(qat_model, shape, observer: RangeObserver):
    """The model's inference pass with its quantizers routed to ``observer``."""
    with observing(observer):
        forward = tf.function(lambda x: qat_model(x, training=False), autograph=False)
        return forward.get_concrete_function(tf.TensorSpec((None, *shape), tf.float32))


def _run(forward, images: np.ndarray):
    for start in range(0, len(images), BATCH_SIZE):
        forward(tf.constant(images[start:start + BATCH_SIZE]))
