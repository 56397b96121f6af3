"""One training engine for every tf.distribute strategy: a custom loop (Keras 3's
``fit`` fails under MultiWorkerMirroredStrategy), checkpoints that resume to the
exact step, an EMA of the weights, a NaN guard and best-weights export.

:func:`train` runs five steps, each handing the next its objects, so a task with
its own model, loss and metrics (a :class:`Task`) reuses the loop:
:func:`prepare` (checks, strategy, dataset, ``run.json`` record) -> :func:`build`
(model, QAT twin, optimizer, EMA) -> :func:`restore` (checkpoint or QAT
calibration) -> :func:`fit` (the loop) -> :func:`trained_model` (the result
rebuilt outside the strategy, for export).

Layout of ``model_dir``::

    run.json             what was trained (model, kwargs, dataset, image size, classes)
    ckpt-N.*, checkpoint tf.train.CheckpointManager (model, optimizer, EMA)
    history.json         one entry per finished epoch
    best.weights.h5      the weights with the best validation metric so far (Task.monitor)
    final.weights.h5     the weights at the end (EMA weights when EMA is on)
    train/, validation/  TensorBoard summaries
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from keras_mobile import data as kdata
from keras_mobile import registry
from keras_mobile.files import atomic_path, atomic_write
from keras_mobile.training import checkpoints as ckpts
from keras_mobile.training import distribute
from keras_mobile.training.recipes import Recipe

MIXED_PRECISION = ("none", "float16", "bfloat16")


class TrainingError(RuntimeError):
    """Training stopped (non-finite loss or weights); the newest checkpoint, which
    holds finite values only, is kept."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    model: str
    recipe: Recipe
    model_dir: str
    dataset: str = kdata.shapes.NAME
    data_dir: str | None = None
    download: bool = False
    image_size: int | None = None  # None: the dataset's, else the model's default
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    strategy: str = "default"
    tpu: str | None = None
    mixed_precision: str = "none"
    jit_compile: bool = False
    seed: int = 0
    train_split: str | None = None  # None: the dataset's
    eval_split: str | None = None
    checkpoint_every: int = 0  # steps; 0: at the end of every epoch only
    keep_checkpoints: int = 3
    max_steps: int = 0  # stop after this many global steps (0: all epochs)
    verbose: int = 1
    qat: bool = False  # train the tfmot quantization-aware (tf_keras) copy of the model


@dataclasses.dataclass
class TrainResult:
    model: keras.Model  # final weights (EMA weights when EMA is on); a tf_keras model for QAT
    # ``model``'s final weights as arrays, read on every worker: under multi-worker,
    # reading tf_keras BatchNorm statistics (QAT) is a collective that all must join.
    weights: list
    history: list[dict]
    steps: int
    resumed_from_step: int
    images_per_second: float
    model_dir: str
    record: dict  # what run.json holds
    chief: bool  # this process writes the checkpoints and exports
    info: kdata.DatasetInfo  # the dataset it was trained on


def check_config(config: TrainConfig) -> None:
    """Everything that can be checked without building or reading anything."""
    registry.get_entry(config.model)  # unknown model: ValueError with suggestions
    ckpts.check_model_dir_path(config.model_dir)
    kdata.check_name(config.dataset)
    if config.strategy not in distribute.STRATEGIES:
        raise ValueError(f"strategy must be one of {list(distribute.STRATEGIES)}. "
                         f"Received: strategy={config.strategy!r}")
    if config.tpu and config.strategy != "tpu":
        raise ValueError(f"tpu={config.tpu!r} needs strategy=tpu (got strategy="
                         f"{config.strategy!r}).")
    if config.mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be one of {list(MIXED_PRECISION)}. "
                         f"Received: {config.mixed_precision!r}")
    r = config.recipe
    if r.optimizer not in ("adamw", "sgd", "rmsprop"):
        raise ValueError('optimizer must be "adamw", "sgd" or "rmsprop". '
                         f"Received: {r.optimizer!r}")
    if r.schedule not in ("cosine", "exponential", "poly"):
        raise ValueError('schedule must be "cosine", "exponential" or "poly". '
                         f"Received: {r.schedule!r}")
    for field in ("batch_size", "epochs"):
        value = getattr(r, field)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{field} must be a positive integer. Received: {field}={value!r}")
    if not 0 <= r.ema_decay < 1:
        raise ValueError(f"ema_decay must be in [0, 1). Received: {r.ema_decay}")
    if r.learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive. Received: {r.learning_rate}")
    kdata.RandAugment.parse(r.randaugment)


class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then cosine decay to
    ``floor`` at ``total_steps``, exponential decay by ``decay_rate`` every
    ``decay_steps`` (staircase), or poly decay ``(1 - progress) ** power`` to ``floor``
    (mmseg's, per step)."""

    def __init__(self, peak, total_steps, warmup_steps=0, kind="cosine", floor=0.0,
                 decay_rate=0.97, decay_steps=1, power=0.9):
        self.peak, self.total_steps, self.warmup_steps = peak, total_steps, warmup_steps
        self.kind, self.floor, self.power = kind, floor, power
        self.decay_rate, self.decay_steps = decay_rate, max(1, decay_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = float(max(self.warmup_steps, 1))
        after = tf.maximum(step - self.warmup_steps, 0.0)
        span = float(max(self.total_steps - self.warmup_steps, 1))
        progress = tf.minimum(after / span, 1.0)
        if self.kind == "cosine":
            decayed = self.floor + 0.5 * (self.peak - self.floor) * (1 + tf.cos(math.pi * progress))
        elif self.kind == "poly":
            decayed = self.floor + (self.peak - self.floor) * (1.0 - progress) ** self.power
        else:
            decayed = self.peak * self.decay_rate ** tf.floor(after / self.decay_steps)
        if self.warmup_steps <= 0:
            return decayed
        return tf.where(step < self.warmup_steps, self.peak * (step + 1) / warmup, decayed)

    def get_config(self):
        return dict(peak=self.peak, total_steps=self.total_steps, warmup_steps=self.warmup_steps,
                    kind=self.kind, floor=self.floor, decay_rate=self.decay_rate,
                    decay_steps=self.decay_steps, power=self.power)


def make_optimizer(recipe: Recipe, steps_per_epoch: int, total_steps: int):
    schedule = WarmupSchedule(
        recipe.scaled_learning_rate(), total_steps, int(recipe.warmup_epochs * steps_per_epoch),
        recipe.schedule, recipe.min_learning_rate, recipe.decay_rate,
        int(round(recipe.decay_epochs * steps_per_epoch)), recipe.poly_power)
    common = dict(learning_rate=schedule, weight_decay=recipe.weight_decay or None)
    if recipe.optimizer == "adamw":
        opt = keras.optimizers.AdamW(**{**common, "weight_decay": recipe.weight_decay})
    elif recipe.optimizer == "sgd":
        opt = keras.optimizers.SGD(momentum=recipe.momentum, nesterov=True, **common)
    else:
        opt = keras.optimizers.RMSprop(rho=0.9, momentum=recipe.momentum,
                                       epsilon=recipe.rmsprop_epsilon, **common)
    return opt


class WeightAverage:
    """Exponential moving average of every model weight (BN statistics included),
    with TF's warm-up: decay = min(decay, (1 + n) / (10 + n))."""

    def __init__(self, model, decay: float):
        self.decay = decay
        self.weights = [_tf_variable(w) for w in model.weights
                        if tf.as_dtype(w.dtype).is_floating]
        self.average = [tf.Variable(w.read_value(), trainable=False, name="ema")
                        for w in self.weights]

    def restart(self):
        """The averages start again from the model's weights (after calibration)."""
        for average, weight in zip(self.average, self.weights, strict=True):
            average.assign(weight.read_value())

    def update(self, step):
        n = tf.cast(step, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + n) / (10.0 + n))
        for avg, w in zip(self.average, self.weights, strict=True):
            avg.assign(avg * decay + tf.cast(w, avg.dtype) * (1.0 - decay))

    @contextlib.contextmanager
    def swapped(self):
        """The model holds the averaged weights inside the block."""
        self.swap()
        try:
            yield
        finally:
            self.swap()

    def swap(self):
        """Exchanges the model's weights and the averages."""
        for avg, w in zip(self.average, self.weights, strict=True):
            value = w.read_value()
            w.assign(avg.read_value())
            avg.assign(value)


def _tf_variable(weight) -> tf.Variable:
    """The tf.Variable behind a Keras 3 variable (tf_keras weights already are)."""
    return weight.value if isinstance(weight, keras.Variable) else weight


def build_model(config: TrainConfig, num_classes: int, image_size: int,
                classifier_activation=None) -> keras.Model:
    """The Keras 3 model ``config`` trains (the float model when ``config.qat``)."""
    return _build(config.model, config.model_kwargs, dataclasses.asdict(config.recipe),
                  num_classes, image_size, classifier_activation)


def _build(model: str, model_kwargs: dict, recipe: dict, num_classes: int, image_size: int,
           classifier_activation) -> keras.Model:
    """A fresh ``model``, with the recipe's regularization: a stochastic-depth or
    dropout rate of 0 leaves its layer out (which the QAT model's weights show)."""
    kwargs = dict(model_kwargs)
    for name in ("drop_path_rate", "dropout"):
        if recipe.get(name) is not None:
            kwargs[name] = recipe[name]
    return registry.get_model(model, weights=None, classes=num_classes,
                              input_shape=(image_size, image_size, 3),
                              classifier_activation=classifier_activation, **kwargs)


def model_from_record(record: dict, classifier_activation=None) -> keras.Model:
    """The model of a run (its ``run.json`` record), freshly initialized."""
    return _build(record["model"], record["model_kwargs"], record.get("recipe", {}),
                  record["num_classes"], record["image_size"], classifier_activation)


def qat_model_from_record(record: dict):
    """The QAT (tf_keras) model of a QAT run's ``run.json`` record, freshly built
    outside any strategy: the layout of ``train``'s QAT model, for its weights."""
    from keras_mobile.quantization import quantize_model

    return quantize_model(model_from_record(record), logits=True)


def _configure_batchnorm(model: keras.Model, momentum: float | None, synchronized: bool) -> None:
    """Sets the moving-average momentum (short runs need a faster one than the
    0.99-0.999 of ImageNet builders) and, under several replicas, batch statistics
    over the global batch, so replicas keep identical moving statistics."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = synchronized
            if momentum is not None:
                layer.momentum = momentum


def _write_json(path, value) -> None:
    atomic_write(path, json.dumps(value, indent=1, sort_keys=True) + "\n")


def _read_json(path, default):
    if not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def run_record(config: TrainConfig, info, image_size: int) -> dict:
    """What ``run.json`` records: enough to rebuild and evaluate the model."""
    return dict(model=config.model, model_kwargs=config.model_kwargs, dataset=config.dataset,
                image_size=image_size, num_classes=info.num_classes,
                class_names=list(info.class_names), recipe=dataclasses.asdict(config.recipe),
                seed=config.seed, strategy=config.strategy, qat=config.qat)


def _check_model_dir(model_dir: str, record: dict) -> None:
    """Refuses to resume a different run: nothing in ``model_dir`` is overwritten."""
    previous = _read_json(os.path.join(model_dir, "run.json"), None)
    if previous is None:
        return
    previous.setdefault("qat", False)
    keys = ("model", "model_kwargs", "dataset", "image_size", "num_classes", "qat")
    changed = {k: (previous.get(k), record[k]) for k in keys if previous.get(k) != record[k]}
    if changed:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ValueError(f"model_dir {model_dir} holds a different run ({detail}); "
                         "use a new --model_dir or delete it.")


class Task:
    """What the loop optimizes and reports, given the model's outputs: the
    per-example loss and per-batch metric sums. Classification is the default;
    detection and segmentation bring their own.

    ``monitor`` names the validation metric (higher is better) that picks
    ``best.weights.h5``.
    """

    metrics: tuple[str, ...] = ()
    monitor: str = ""
    dataset_task = "classification"  # the datasets it reads (DatasetInfo.task)

    def loss(self, labels, outputs):
        """Per-example loss, shape ``(batch,)``."""
        raise NotImplementedError

    def metric_sums(self, labels, outputs, weights) -> tuple:
        """One weighted sum over the batch per name in ``metrics``."""
        raise NotImplementedError

    def evaluation_sums(self, labels, outputs, weights) -> tuple:
        """The validation pass's per-batch sums (tensors of any fixed shape, summed over
        batches and replicas); default :meth:`metric_sums`."""
        return self.metric_sums(labels, outputs, weights)

    def summarize(self, sums: list, count: int) -> dict:
        """The validation metrics from :meth:`evaluation_sums` summed over the split
        (``count`` examples); default: each sum's mean per example, named ``metrics``."""
        return {name: float(value) / count for name, value in zip(self.metrics, sums,
                                                                   strict=True)}

    def input_pipeline(self, info, split, **kwargs) -> tf.data.Dataset:
        """Batches of ``(images, labels, weights)``, ``labels`` any nest of tensors (the
        arguments of :func:`keras_mobile.data.input_pipeline`, which this default is)."""
        return kdata.input_pipeline(info, split, **kwargs)

    def quantize(self, model):
        """The quantization-aware (tfmot, tf_keras) twin of ``model`` that QAT trains:
        here a classifier's, its head the logits."""
        from keras_mobile.quantization import quantize_model

        return quantize_model(model, logits=True)

    def calibration_images(self, info, split: str, image_size: int, count: int) -> np.ndarray:
        """The first ``count`` images of ``split`` as evaluation reads them (float32
        [0, 255]): what a fresh QAT model's ranges are calibrated on, as the int8 export
        calibrates."""
        from keras_mobile.data.samples import split_images

        return split_images(info, split, image_size, count)[0]


class Classification(Task):
    """Softmax cross-entropy on one-hot labels (with label smoothing); top-1 accuracy."""

    metrics = ("accuracy",)
    monitor = "accuracy"

    def __init__(self, label_smoothing: float = 0.0):
        self._loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing, reduction=None)

    def loss(self, labels, outputs):
        return self._loss(labels, outputs)

    def metric_sums(self, labels, outputs, weights):
        hits = tf.cast(tf.equal(tf.argmax(outputs, -1), tf.argmax(labels, -1)), weights.dtype)
        return (tf.reduce_sum(hits * weights),)


@dataclasses.dataclass
class Run:
    """Step 1, :func:`prepare`: what a run trains, checked, before anything is built."""

    config: TrainConfig
    strategy: tf.distribute.Strategy
    info: kdata.DatasetInfo
    train_split: str
    eval_split: str
    image_size: int
    record: dict  # run.json
    steps_per_epoch: int
    total_steps: int
    chief: bool

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync


@dataclasses.dataclass
class Trainable:
    """Step 2, :func:`build`: the model, its optimizer and weight average, made in
    the strategy's scope."""

    model: object  # keras.Model, or the tf_keras QAT model
    optimizer: keras.optimizers.Optimizer
    ema: WeightAverage | None


@dataclasses.dataclass
class Checkpoints:
    """Step 3, :func:`restore`: the checkpoint manager and the step training resumes at."""

    manager: tf.train.CheckpointManager
    step: int
    latest: str | None


def prepare(config: TrainConfig, dataset_task: str | None = None) -> Run:
    """Checks ``config``, makes the strategy and reads the dataset's metadata."""
    check_config(config)
    strategy = distribute.make_strategy(config.strategy, config.tpu)
    recipe = config.recipe
    if recipe.batch_size % strategy.num_replicas_in_sync:
        raise ValueError(f"batch_size={recipe.batch_size} is not divisible by the "
                         f"{strategy.num_replicas_in_sync} replicas of "
                         f"strategy={config.strategy!r}.")
    info = kdata.dataset_info(config.dataset, config.data_dir, download=config.download,
                              task=dataset_task)
    train_split = config.train_split or info.catalogue.train_split
    image_size = config.image_size or info.catalogue.image_size or \
        registry.get_entry(config.model).default_size
    record = run_record(config, info, image_size)
    steps_per_epoch = info.num_examples(train_split) // recipe.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size={recipe.batch_size} exceeds the "
                         f"{info.num_examples(train_split)} examples of {train_split!r}.")
    total_steps = steps_per_epoch * recipe.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    eval_split = config.eval_split or info.catalogue.eval_split
    info.num_examples(eval_split)  # a split it does not have fails now, not after an epoch
    return Run(config, strategy, info, train_split, eval_split, image_size, record,
               steps_per_epoch, total_steps, distribute.is_chief(strategy))


def build(run: Run, init_weights: list | None = None, model=None,
          task: Task | None = None) -> Trainable:
    """The model (``model``, or the registry's for ``run.config``), started from
    ``init_weights`` and switched to its QAT twin (``task.quantize``) for ``config.qat``,
    with its optimizer and EMA, all in the strategy's scope."""
    config, recipe = run.config, run.config.recipe
    task = task or Classification()
    if config.mixed_precision != "none":
        keras.mixed_precision.set_dtype_policy(f"mixed_{config.mixed_precision}")
    keras.utils.set_random_seed(config.seed)
    with run.strategy.scope():
        if model is None:
            model = build_model(config, run.info.num_classes, run.image_size)
        _configure_batchnorm(model, recipe.bn_momentum, synchronized=run.replicas > 1)
        if init_weights is not None:
            model.set_weights(init_weights)
        if config.qat:
            model = task.quantize(model)
        optimizer = make_optimizer(recipe, run.steps_per_epoch,
                                   run.steps_per_epoch * recipe.epochs)
        # No weight decay on biases and normalization parameters (timm, the EMO code).
        optimizer.exclude_from_weight_decay(
            var_list=[w for w in model.trainable_weights if len(w.shape) <= 1])
        if config.mixed_precision == "float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        ema = WeightAverage(model, recipe.ema_decay) if recipe.ema_decay else None
    return Trainable(model, optimizer, ema)


def restore(run: Run, trainable: Trainable, task: Task | None = None) -> Checkpoints:
    """Restores the newest checkpoint of ``model_dir``; a fresh QAT run instead
    starts its ranges where post-training int8 would: calibrated on the first
    ``NUM_CALIBRATION_SAMPLES`` training images (``task.calibration_images``; every
    worker reads the same images, so the ranges agree without communication)."""
    config = run.config
    task = task or Classification()
    checkpoint = tf.train.Checkpoint(model=trainable.model, optimizer=trainable.optimizer,
                                     ema=trainable.ema.average if trainable.ema else [])
    # Every worker saves (the save is collective); only the chief's copy is kept.
    task_type, task_id = distribute.task(run.strategy)
    save_dir = config.model_dir if run.chief else os.path.join(
        config.model_dir, f".{task_type}-{task_id}")
    manager = tf.train.CheckpointManager(checkpoint, save_dir, max_to_keep=config.keep_checkpoints)
    latest = ckpts.restore_newest(checkpoint, config.model_dir,
                                  tf.train.latest_checkpoint(config.model_dir))
    if latest is None and config.qat:
        from keras_mobile.quantization import calibrate
        from keras_mobile.training.export import NUM_CALIBRATION_SAMPLES

        images = task.calibration_images(run.info, run.train_split, run.image_size,
                                         NUM_CALIBRATION_SAMPLES)
        calibrate(trainable.model, images, len(images))
        if trainable.ema:
            trainable.ema.restart()
    return Checkpoints(manager, int(trainable.optimizer.iterations.numpy()), latest)


def train(config: TrainConfig, init_weights: list | None = None, *,
          task: Task | None = None) -> TrainResult:
    """Trains (or resumes) ``config`` and returns the model with its final weights:
    :func:`prepare`, :func:`build`, :func:`restore`, then :func:`fit`.

    ``init_weights`` (the Keras 3 model's ``get_weights()``) start the run from a
    trained model instead of a random initialization: with ``config.qat`` this
    fine-tunes the float model with quantization-aware training. ``task``: the
    loss and metrics (default: classification with the recipe's label smoothing).
    """
    if config.qat and init_weights is None:
        raise ValueError("qat=True fine-tunes a trained float model: pass its init_weights.")
    run = prepare(config)
    task = task or Classification(config.recipe.label_smoothing)
    run.info.check_task(task.dataset_task)  # a detection dataset: one line, before building
    with owning(run):
        trainable = build(run, init_weights, task=task)
        checkpoints = restore(run, trainable, task)
        return fit(run, trainable, checkpoints, task)


@contextlib.contextmanager
def owning(run: Run):
    """``run`` owns its ``model_dir`` inside (:func:`checkpoints.lock`; a multi-worker
    run's chief locks it for all its workers), which holds no other run."""
    with ckpts.lock(run.config.model_dir) if run.chief else contextlib.nullcontext():
        _check_model_dir(run.config.model_dir, run.record)
        yield


def fit(run: Run, trainable: Trainable, checkpoints: Checkpoints, task: Task) -> TrainResult:
    """Step 4: the loop, from ``checkpoints.step`` to ``run.total_steps``: an epoch of
    training, validation (EMA weights), ``best.weights.h5`` on ``task.monitor``,
    history, a checkpoint; then ``final.weights.h5``."""
    config, recipe, info = run.config, run.config.recipe, run.info
    model, optimizer, ema = trainable.model, trainable.optimizer, trainable.ema
    step = resumed_from = checkpoints.step
    history_path = os.path.join(config.model_dir, "history.json")
    history = [h for h in _read_json(history_path, [])
               if h["epoch"] < step // run.steps_per_epoch]
    if run.chief:
        os.makedirs(config.model_dir, exist_ok=True)
        _write_json(os.path.join(config.model_dir, "run.json"), run.record)
    writers = _summary_writers(config.model_dir, run.chief)
    randaugment = kdata.RandAugment.parse(recipe.randaugment)

    def dataset(split, training, epoch=0, skip_steps=0):
        def fn(ctx: tf.distribute.InputContext):
            return task.input_pipeline(
                info, split, training=training, image_size=run.image_size,
                global_batch_size=recipe.batch_size,
                replica_batch_size=recipe.batch_size // run.replicas,
                pipeline_id=ctx.input_pipeline_id, num_pipelines=ctx.num_input_pipelines,
                seed=config.seed, epoch=epoch, skip_steps=skip_steps, randaugment=randaugment)
        return run.strategy.distribute_datasets_from_function(fn)

    train_step = _train_step(run.strategy, model, optimizer, ema, recipe, task,
                             config.jit_compile)
    eval_step = _eval_step(run.strategy, model, task, config.jit_compile)
    monitor = f"val_{task.monitor}"
    best = max((h[monitor] for h in history), default=-math.inf)
    # A rerun of a finished run trains nothing: it reports the run's last throughput.
    images_per_second = history[-1]["images_per_second"] if history else 0.0
    guard = _Guard([*model.weights, *optimizer.variables, *(ema.average if ema else [])],
                   checkpoints.manager, config.model_dir)
    if config.verbose and run.chief and resumed_from:
        print(f"Resumed from step {resumed_from} ({checkpoints.latest}).", flush=True)
    while step < run.total_steps:
        epoch, in_epoch = divmod(step, run.steps_per_epoch)
        end = min((epoch + 1) * run.steps_per_epoch, run.total_steps)
        bar = keras.utils.Progbar(end - epoch * run.steps_per_epoch,
                                  verbose=config.verbose if run.chief else 0,
                                  stateful_metrics=["lr", "img/s"], unit_name="step")
        if in_epoch and bar.verbose:
            bar.update(in_epoch)
        iterator = iter(dataset(run.train_split, True, epoch, in_epoch))
        sums = np.zeros(1 + len(task.metrics))  # loss, then the task's metrics
        seen = 0
        start = time.perf_counter()
        timed_from = None
        while step < end:
            values = np.array([t.numpy() for t in train_step(iterator)])
            loss = values[0]
            step += 1
            guard.after_step(step, loss)
            sums, seen = sums + values, seen + 1
            if timed_from is None:  # the first step includes tracing
                timed_from = (time.perf_counter(), step)
            elif step > timed_from[1]:
                images_per_second = ((step - timed_from[1]) * recipe.batch_size
                                     / (time.perf_counter() - timed_from[0]))
            lr = float(optimizer.learning_rate.numpy()) if hasattr(
                optimizer.learning_rate, "numpy") else float(optimizer.learning_rate)
            bar.update(step - epoch * run.steps_per_epoch,
                       [("loss", loss),
                        *((name, v / recipe.batch_size)
                          for name, v in zip(task.metrics, values[1:], strict=True)),
                        ("lr", lr), ("img/s", images_per_second)])
            with writers["train"].as_default(step=step):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("learning_rate", lr)
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < end:
                guard.check_weights(step)
                _save(checkpoints.manager, step, run.chief)
                guard.saved(step)
        guard.check_weights(step)
        with ema.swapped() if ema else contextlib.nullcontext():
            validation = _evaluate(eval_step, dataset(run.eval_split, False),
                                   info.num_examples(run.eval_split), task)
            # The same decision on every worker: the metrics are global.
            if np.isfinite(validation["loss"]) and validation[task.monitor] > best:
                best = validation[task.monitor]
                _save_weights(model, os.path.join(config.model_dir, "best.weights.h5"),
                              run.chief)
        entry = dict(epoch=epoch, step=step, loss=sums[0] / max(seen, 1),
                     **{name: v / max(seen * recipe.batch_size, 1)
                        for name, v in zip(task.metrics, sums[1:], strict=True)},
                     **{f"val_{name}": v for name, v in validation.items()},
                     images_per_second=images_per_second,
                     epoch_seconds=time.perf_counter() - start, resumed=bool(in_epoch))
        history.append(entry)
        with writers["validation"].as_default(step=step):
            for name, value in validation.items():
                tf.summary.scalar(name, value)
        if config.verbose and run.chief:
            print(f"epoch {epoch + 1}/{recipe.epochs}: " + " ".join(
                f"val_{name} {value:.4f}" for name, value in
                sorted(validation.items(), key=lambda kv: kv[0] != task.monitor)), flush=True)
        if run.chief:
            _write_json(history_path, history)
        _save(checkpoints.manager, step, run.chief)
        guard.saved(step)
    if ema:
        ema.swap()  # the returned model and final.weights.h5 hold the averaged weights
    _save_weights(model, os.path.join(config.model_dir, "final.weights.h5"), run.chief)
    weights = model.get_weights()
    for writer in writers.values():
        writer.flush()
    return TrainResult(model, weights, history, step, resumed_from, images_per_second,
                       config.model_dir, run.record, run.chief, info)


def trained_model(result: TrainResult, classifier_activation=None):
    """Step 5: a run's model rebuilt outside any strategy (the converter reads every
    variable) with its final weights: the Keras 3 model, or the tf_keras QAT model
    of a QAT run (whose head is the logits)."""
    if result.record.get("qat"):
        model = qat_model_from_record(result.record)
    else:
        model = model_from_record(result.record, classifier_activation)
    model.set_weights(result.weights)
    return model


class _Guard:
    """The NaN guard. Nothing non-finite is ever saved, and a checkpoint stays only
    if the step after it is still finite (loss, weights, optimizer slots): a state
    that is finite but already diverging (an Adam slot about to overflow) is
    dropped, so the checkpoint a rerun resumes from can train on."""

    def __init__(self, variables, manager: tf.train.CheckpointManager, model_dir: str):
        self.variables, self.manager, self.model_dir = variables, manager, model_dir
        self.pending = None  # the newest checkpoint's step, until the step after it

    def after_step(self, step: int, loss: float) -> None:
        if not np.isfinite(loss):
            self._stop(f"loss is {loss} at step {step}")
        if self.pending is not None:
            self.check_weights(step)
            self.pending = None

    def check_weights(self, step: int) -> None:
        if not ckpts.all_finite(self.variables):
            self._stop(f"the weights are no longer finite at step {step}")

    def saved(self, step: int) -> None:
        self.pending = step

    def _stop(self, what: str):
        if self.pending is not None:
            ckpts.remove(self.manager, os.path.join(self.manager.directory,
                                                    f"ckpt-{self.pending}"))
        latest = tf.train.latest_checkpoint(self.model_dir)
        kept = (f"The newest good checkpoint, {latest}, is kept." if latest else
                "No good checkpoint was written; a rerun starts from the beginning.")
        raise TrainingError(f"{what}: training stopped. {kept} Lower the learning rate (or "
                            "check the data) and run again to resume.")


def _summary_writers(model_dir: str, chief: bool):
    if not chief:
        return {"train": tf.summary.create_noop_writer(),
                "validation": tf.summary.create_noop_writer()}
    return {split: tf.summary.create_file_writer(os.path.join(model_dir, split))
            for split in ("train", "validation")}


def _save(manager: tf.train.CheckpointManager, step: int, chief: bool) -> None:
    manager.save(checkpoint_number=step)
    if not chief:  # the save is collective: workers write a copy, then drop it
        shutil.rmtree(manager.directory, ignore_errors=True)


def _save_weights(model: keras.Model, path: str, chief: bool) -> None:
    """Every worker saves (reading tf_keras BatchNorm statistics under multi-worker
    is collective); only the chief's file is kept."""
    if chief:
        with atomic_path(path, suffix=".weights.h5") as tmp:
            model.save_weights(tmp)
        return
    scratch = tempfile.mkdtemp()
    try:
        model.save_weights(os.path.join(scratch, os.path.basename(path)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _train_step(strategy, model, optimizer, ema, recipe: Recipe, task: Task,
                jit_compile: bool):
    variables = model.trainable_variables
    replicas = strategy.num_replicas_in_sync
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    @tf.autograph.experimental.do_not_convert  # no tensor-dependent Python control flow
    def replica_step(images, labels, weights):
        with tf.GradientTape() as tape:
            # float32 logits under mixed precision; the variables' dtype otherwise.
            logits, labels, weights = _cast((model(images, training=True), labels, weights))
            per_example = task.loss(labels, logits) * weights
            loss = tf.nn.compute_average_loss(per_example,
                                              global_batch_size=recipe.batch_size)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            target = optimizer.scale_loss(loss) if scaled else loss
        grads = tape.gradient(target, variables)
        if recipe.clip_norm and not scaled:
            # Clip the global gradient: sum over replicas first, then hand the
            # optimizer 1/replicas of it (it sums over replicas again).
            context = tf.distribute.get_replica_context()
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            grads, _ = tf.clip_by_global_norm(grads, recipe.clip_norm)
            grads = [g / replicas for g in grads]
        optimizer.apply(grads, variables)
        return (loss, *task.metric_sums(labels, logits, weights))

    @tf.function(jit_compile=jit_compile or None)
    def step(iterator):
        values = strategy.run(replica_step, args=next(iterator))
        if ema is not None:
            ema.update(optimizer.iterations)
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in values]

    return step


def _cast(tensors):
    """Every tensor of a nest (a model's outputs may be a dict) as ``floatx``."""
    return tf.nest.map_structure(lambda t: tf.cast(t, keras.backend.floatx()), tensors)


def _eval_step(strategy, model, task: Task, jit_compile: bool):
    @tf.autograph.experimental.do_not_convert
    def replica_step(images, labels, weights):
        logits, labels, weights = _cast((model(images, training=False), labels, weights))
        loss = tf.reduce_sum(task.loss(labels, logits) * weights)
        return (loss, *task.evaluation_sums(labels, logits, weights))

    @tf.function(jit_compile=jit_compile or None)
    def step(batch):
        values = strategy.run(replica_step, args=batch)
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in values]

    return step


def _evaluate(eval_step, dataset, count: int, task: Task) -> dict:
    """Validation loss (the mean over ``count`` examples) and the task's metrics
    (:meth:`Task.summarize`)."""
    sums = None
    for batch in dataset:
        values = [np.asarray(v, np.float64) for v in eval_step(batch)]
        sums = values if sums is None else [a + b for a, b in zip(sums, values, strict=True)]
    return {"loss": float(sums[0]) / count, **task.summarize(sums[1:], count)}
