"""Train a registered model on a tensorflow-datasets dataset, then export, benchmark
and report.

    python scripts/train.py                       # the main job (embedded dataset)
    python scripts/train.py --model=EMO1M --dataset=imagenet2012 --data_dir=/data/tfds \\
        --strategy=mirrored --batch_size=2048 --epochs=300 --model_dir=/ckpt/emo1m
    python scripts/train.py --task=detection      # SSDLite on the embedded detection data
    python scripts/train.py --task=detection --model=SSDLite --backbone=EMO1M \\
        --dataset=coco/2017 --data_dir=/data/tfds --strategy=mirrored --model_dir=/ckpt/ssd
    python scripts/train.py --task=segmentation   # LR-ASPP on the embedded masks
    python scripts/train.py --task=segmentation --model=DeepLabV3 --backbone=EMO1M \\
        --dataset=/data/ADEChallengeData2016 --image_size=512

With no flags it trains the default model on the embedded ``keras_mobile_shapes``
dataset (prepared into ``--data_dir`` on first use), evaluates it, fine-tunes
it with quantization-aware training (``--qat``, tfmot), exports float32, int8
(post-training) and QAT int8 TFLite, benchmarks them on this host and writes
``<model_dir>/report.md``. Rerunning the same command resumes from the last
checkpoint in ``--model_dir``. The recipe is the family's published one for real
datasets (``--recipe=paper``) and a short one for the embedded dataset; every
field can be overridden by its flag. Installed as ``keras-mobile-train``.
"""

from __future__ import annotations

import contextlib
import os
import time

from absl import flags

from keras_mobile.cli import fail, run_main

FLAGS = flags.FLAGS
TASKS = ("classification", "detection", "segmentation")
DENSE_TASKS = ("detection", "segmentation")  # a head (--model) on a backbone (--backbone)
# Per task: (model, backbone, alpha, dataset) when their flags are not given.
DEFAULTS = {"classification": ("MobileNetV3Small", None, None, "keras_mobile_shapes"),
            "detection": ("SSDLite", "MobileNetV3Small", 0.75, "keras_mobile_shapes_detection"),
            "segmentation": ("LRASPP", "MobileNetV3Small", 0.75,
                             "keras_mobile_shapes_detection")}
flags.DEFINE_enum("task", "classification", list(TASKS), "What to train: a classifier, a "
                  "detector (--model=SSDLite or RetinaNet on --backbone) or a segmenter "
                  "(--model=LRASPP, DeepLabV3 or PSPNet on --backbone).")
flags.DEFINE_string("model", None, "Registered model name (classification, default "
                    "MobileNetV3Small), the detector: SSDLite (default) or RetinaNet, or the "
                    "segmenter: LRASPP (default), DeepLabV3 or PSPNet.")
flags.DEFINE_string("backbone", None, "--task=detection or segmentation: the registered "
                    "backbone model (default MobileNetV3Small with --alpha 0.75).")
flags.DEFINE_integer("output_stride", None, "--task=segmentation: 32, 16 or 8 (the backbone's "
                     "last stages dilated; default: the segmenter's, 16 for LRASPP, 32 for "
                     "DeepLabV3 and PSPNet as the EMO configs).")
flags.DEFINE_float("alpha", None, "Width multiplier (MobileNet, V2, V3, MobileNeXt; of the "
                   "backbone for detection).")
flags.DEFINE_string("dataset", None,
                    "Classification: imagenet2012, imagenette, tf_flowers, cifar10, cifar100, "
                    "keras_mobile_shapes (default), or a folder of <split>/<class>/<image> "
                    "files. Detection: keras_mobile_shapes_detection (default), coco/2017, "
                    "voc/2007, voc/2012, or a COCO-JSON folder. Segmentation: "
                    "keras_mobile_shapes_detection's masks (default), scene_parse150, or a "
                    "folder of images and mask PNGs (ADEChallengeData2016, VOCdevkit/VOC2012, "
                    "<split>/images + <split>/masks).")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data dir (default: $TFDS_DATA_DIR "
                    "or ~/tensorflow_datasets).")
flags.DEFINE_bool("download", False, "Let tfds download and prepare a missing dataset.")
flags.DEFINE_integer("image_size", None, "Training resolution (default: the dataset's, or the "
                     "model's).")
flags.DEFINE_string("model_dir", None, "Checkpoints, exports and report (default: "
                    "runs/<model>_<dataset>). An existing run there is resumed.")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                  "tf.distribute strategy (multi_worker reads TF_CONFIG).")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address (--strategy=tpu).")
flags.DEFINE_integer("cpu_devices", 1, "Split the CPU into this many logical devices "
                     "(--strategy=mirrored on a machine without GPUs).")
flags.DEFINE_enum("mixed_precision", "none", ["none", "float16", "bfloat16"],
                  "Mixed precision (GPU: float16, TPU: bfloat16); logits and the attention "
                  "softmax stay float32.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the steps (GPU/TPU; slower on CPU).")
flags.DEFINE_integer("seed", 0, "Seed of the initialization, data order and augmentation.")
flags.DEFINE_enum("recipe", "auto", ["auto", "paper", "main_job"],
                  "auto: main_job on the embedded keras_mobile_shapes(_hard), the family's "
                  "paper recipe otherwise.")
# Recipe overrides (None: the recipe's value).
flags.DEFINE_integer("batch_size", None, "Global batch size.")
flags.DEFINE_integer("epochs", None, "Epochs.")
flags.DEFINE_float("learning_rate", None, "Peak learning rate at --batch_size (not rescaled).")
flags.DEFINE_enum("optimizer", None, ["adamw", "sgd", "rmsprop"], "Optimizer.")
flags.DEFINE_float("weight_decay", None, "Decoupled weight decay.")
flags.DEFINE_float("warmup_epochs", None, "Linear warm-up epochs.")
flags.DEFINE_float("label_smoothing", None, "Label smoothing.")
flags.DEFINE_string("randaugment", None, 'timm syntax, e.g. "rand-m9-mstd0.5-inc1", or "none".')
flags.DEFINE_float("drop_path_rate", None, "Stochastic depth (EMO).")
flags.DEFINE_float("ema_decay", None, "EMA decay of the weights (0: off).")
flags.DEFINE_float("clip_norm", None, "Global gradient-norm clipping (0: off).")
flags.DEFINE_float("bn_momentum", None, "BatchNormalization moving-average momentum.")
flags.DEFINE_bool("qat", True, "After float training, fine-tune with quantization-aware training "
                  "(tfmot) in <model_dir>/qat, its activation ranges first calibrated on 200 "
                  "training images, and export it as full int8 (model_qat_int8.tflite, "
                  "uint8 I/O).")
flags.DEFINE_integer("qat_epochs", None, "Epochs of the QAT fine-tune.")
flags.DEFINE_float("qat_learning_rate", None, "Peak learning rate of the QAT fine-tune "
                   "(default: the recipe's learning rate / 10; cosine to 0, no warm-up).")
flags.DEFINE_integer("checkpoint_every", 0, "Also checkpoint every N steps (0: every epoch).")
flags.DEFINE_integer("max_steps", 0, "Stop after N global steps (0: all epochs).")
flags.DEFINE_list("export", ["float32", "int8"], "TFLite modes to export after training "
                  "(float32, float16, dynamic, int8 = post-training full int8, int8_percentile = "
                  "the same with percentile ranges); empty: none. "
                  "--qat adds qat_int8. Detectors export with NMS and MediaPipe metadata.")
flags.DEFINE_bool("benchmark", True, "Benchmark the exports on this host (1 thread).")
flags.DEFINE_bool("smoke", False, "A tiny run for tests: 64 images (32 px for classifiers), "
                  "2 epochs.")
flags.DEFINE_integer("verbose", 1, "0: quiet, 1: progress bar, 2: one line per epoch.")

_OVERRIDES = ("batch_size", "epochs", "learning_rate", "optimizer", "weight_decay",
              "warmup_epochs", "label_smoothing", "randaugment", "drop_path_rate", "ema_decay",
              "clip_norm", "bn_momentum", "qat_epochs", "qat_learning_rate")


def recipe_from_flags(model: str, dataset: str):
    from keras_mobile import training
    from keras_mobile.data import shapes

    embedded = (DEFAULTS[FLAGS.task][3], shapes.HARD_NAME)  # generated here: short recipes
    use_main = FLAGS.recipe == "main_job" or (FLAGS.recipe == "auto" and dataset in embedded)
    if FLAGS.task == "detection":
        recipe = training.DETECTION_MAIN_JOB if use_main else \
            training.detection_recipe_for(model)
    elif FLAGS.task == "segmentation":
        recipe = training.SEGMENTATION_MAIN_JOB if use_main else \
            training.segmentation_recipe_for(model)
    else:
        recipe = training.MAIN_JOB if use_main else training.recipe_for(model)
    overrides = {k: getattr(FLAGS, k) for k in _OVERRIDES if getattr(FLAGS, k) is not None}
    if "learning_rate" in overrides:  # given at the chosen batch size; else scaled linearly
        overrides["reference_batch_size"] = overrides.get("batch_size", recipe.batch_size)
    if FLAGS.smoke:
        overrides.setdefault("batch_size", 16)
        overrides.setdefault("epochs", 2)
        overrides.setdefault("qat_epochs", 1)
        overrides["warmup_epochs"] = 0
    return recipe.replace(**overrides)


SMOKE_NEEDS = ("; --smoke reads train[:64] and validation[:32], so it needs 64 training "
               "and 32 validation images")


def config_from_flags():
    from keras_mobile import training
    from keras_mobile.models._common import check_positive

    dense = FLAGS.task in DENSE_TASKS
    model, backbone, alpha, dataset = DEFAULTS[FLAGS.task]
    model = FLAGS.model or model
    dataset = FLAGS.dataset or dataset
    if not dense and FLAGS.backbone:
        raise ValueError("--backbone needs --task=detection or segmentation (a classifier is "
                         "--model).")
    if FLAGS.output_stride is not None and FLAGS.task != "segmentation":
        raise ValueError("--output_stride needs --task=segmentation.")
    if dense:
        heads = _dense_module().HEADS
        if model not in heads:
            raise ValueError(f"--model must be a {_HEAD_NOUN[FLAGS.task]}, one of "
                             f"{list(heads)}, with --task={FLAGS.task} (the backbone is "
                             f"--backbone). Received: --model={model!r}.")
        if FLAGS.backbone:  # the default backbone's alpha goes with it only
            backbone, alpha = FLAGS.backbone, None
    if FLAGS.alpha is not None:
        check_positive("alpha", FLAGS.alpha)
        alpha = FLAGS.alpha
    model_kwargs = {} if alpha is None else {"alpha": alpha}
    registered = model
    if dense:  # run.json: the backbone is the registered model, the head a kwarg
        registered, model_kwargs = backbone, {_HEAD_NOUN[FLAGS.task]: model,
                                              "backbone_kwargs": model_kwargs}
        if FLAGS.task == "segmentation":
            model_kwargs["segmenter_kwargs"] = {} if FLAGS.output_stride is None else {
                "output_stride": FLAGS.output_stride}
    dataset_name = os.path.basename(os.path.normpath(dataset))
    name = f"{model}_{backbone}" if dense else model
    model_dir = FLAGS.model_dir or os.path.join("runs", f"{name}_{dataset_name}")
    if FLAGS.cpu_devices > 1 and FLAGS.strategy != "mirrored":
        raise ValueError("--cpu_devices needs --strategy=mirrored.")
    smoke = dict(image_size=_SMOKE_SIZE[FLAGS.task], train_split="train[:64]",
                 eval_split="validation[:32]") if FLAGS.smoke else {}  # SMOKE_NEEDS says so
    return training.TrainConfig(
        model=registered, recipe=recipe_from_flags(model, dataset),
        model_dir=model_dir, dataset=dataset, data_dir=FLAGS.data_dir,
        download=FLAGS.download, image_size=FLAGS.image_size or smoke.get("image_size"),
        model_kwargs=model_kwargs, strategy=FLAGS.strategy, tpu=FLAGS.tpu,
        mixed_precision=FLAGS.mixed_precision, jit_compile=FLAGS.jit_compile, seed=FLAGS.seed,
        train_split=smoke.get("train_split"), eval_split=smoke.get("eval_split"),
        checkpoint_every=FLAGS.checkpoint_every, max_steps=FLAGS.max_steps,
        verbose=FLAGS.verbose)


_HEAD_NOUN = {"detection": "detector", "segmentation": "segmenter"}
_SMOKE_SIZE = {"classification": 32, "detection": None, "segmentation": 64}


def _dense_module():
    """The training module of --task (detection or segmentation)."""
    if FLAGS.task == "detection":
        from keras_mobile.detection import training as module
    else:
        from keras_mobile.segmentation import training as module
    return module


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; flags look like --model=EMO1M.")
    from keras_mobile.data import DatasetError, SplitError
    from keras_mobile.training import StrategyError, TrainingError, checkpoints

    try:
        config = config_from_flags()
        # One run owns a model_dir from training to report (a multi-worker run's chief
        # locks it inside training: its workers share the folder).
        owner = contextlib.nullcontext() if FLAGS.strategy == "multi_worker" else \
            checkpoints.lock(config.model_dir)
        with owner:
            _run(config)
    except (ValueError, StrategyError, DatasetError, TrainingError) as error:
        fail(f"{error}{SMOKE_NEEDS if FLAGS.smoke and isinstance(error, SplitError) else ''}")


def _run(config):
    import dataclasses

    from keras_mobile.training import distribute, engine, export

    distribute.configure_cpu_devices(FLAGS.cpu_devices)
    unknown = set(FLAGS.export) - set(export.TFLITE_MODES)
    if unknown:
        raise ValueError(f"--export takes {list(export.TFLITE_MODES)}. Received: "
                         f"{sorted(unknown)}")
    if FLAGS.task in DENSE_TASKS:
        return _run_dense(config)
    result = engine.train(config)
    # The run's own time (all its epochs, resumed ones included), not this process's.
    seconds = {"training": _seconds(result)}
    qat = None
    if FLAGS.qat:
        qat = engine.train(dataclasses.replace(
            config, qat=True, model_dir=os.path.join(config.model_dir, "qat"),
            recipe=config.recipe.qat()), init_weights=result.weights)
        seconds["QAT"] = _seconds(qat)
    if result.chief:  # the other workers only train
        _finish(config, result, qat, seconds)


def _seconds(result) -> float:
    return sum(h["epoch_seconds"] for h in result.history)


def _finish(config, result, qat, seconds):
    from keras_mobile import profiling
    from keras_mobile.benchmark import host
    from keras_mobile.training import engine, export

    record = result.record
    exports = []
    if FLAGS.export or qat:
        start = time.perf_counter()
        info = result.info
        model = engine.trained_model(result, classifier_activation="softmax")
        qat_model = engine.trained_model(qat) if qat else None
        eval_split = config.eval_split or info.catalogue.eval_split
        train_split = config.train_split or info.catalogue.train_split
        exports = export.export_tflite(model, config.model_dir, FLAGS.export, info=info,
                                       image_size=record["image_size"], name=config.model,
                                       eval_split=eval_split, calibration_split=train_split,
                                       qat_model=qat_model)
        seconds["export"] = time.perf_counter() - start
        if FLAGS.benchmark:
            start = time.perf_counter()
            macs = profiling.profile(model).macs
            export.benchmark(exports, config.model, macs, num_runs=10 if FLAGS.smoke else 50)
            seconds["benchmark"] = time.perf_counter() - start
    report = export.write_report(config.model_dir, record=record, history=result.history,
                                 exports=exports, seconds=seconds, machine=host.machine(),
                                 images_per_second=result.images_per_second,
                                 qat_history=qat.history if qat else None)
    print(f"Report: {report}")
    print(open(report, encoding="utf-8").read())


def _run_dense(config):
    """Detection or segmentation: train the head on its backbone, fine-tune it with QAT,
    then export, evaluate, benchmark and report (the chief)."""
    import dataclasses

    from keras_mobile.training import engine

    module = _dense_module()

    engine.check_config(config)  # names and settings, before the dataset is read
    from keras_mobile.export import POST_TRAINING_MODES

    unknown = set(FLAGS.export) - set(POST_TRAINING_MODES)
    if unknown:
        raise ValueError(f"--export takes {list(POST_TRAINING_MODES)}. Received: "
                         f"{sorted(unknown)}")
    record = _record(config)
    result = module.train(config, module.model_from_record(record))
    seconds = {"training": _seconds(result)}
    qat = None
    if FLAGS.qat:
        qat_config = dataclasses.replace(config, qat=True,
                                         model_dir=os.path.join(config.model_dir, "qat"),
                                         recipe=config.recipe.qat())
        qat = module.train(qat_config, module.model_from_record(record),
                           init_weights=result.weights)
        seconds["QAT"] = _seconds(qat)
    if result.chief:
        _finish_dense(config, result, qat, seconds)


def _record(config) -> dict:
    """What the task's ``model_from_record`` needs, from the flags (before ``run.json``):
    the input side is --image_size, else 320 for detection (SSDLite's) and the dataset's
    size or 512 (the EMO configs' crop) for segmentation."""
    from keras_mobile.data import dataset_info

    info = dataset_info(config.dataset, config.data_dir, download=config.download,
                        task=FLAGS.task)
    info.check_task(FLAGS.task)
    default_size = 320 if FLAGS.task == "detection" else info.catalogue.image_size or 512
    return {"model": config.model, "model_kwargs": config.model_kwargs,
            "image_size": config.image_size or default_size, "num_classes": info.num_classes}


def _finish_dense(config, result, qat, seconds):
    """After a detection or segmentation run: evaluate the float and QAT models, export
    and evaluate the files, benchmark them, draw validation images, write the report
    (each task's :mod:`report` module: ``export_models``, ``benchmark``, ``draw_validation``,
    ``write_report``, ``SMOKE_TOLERANCE``)."""
    import importlib

    from keras_mobile import profiling
    from keras_mobile.benchmark import host
    from keras_mobile.benchmark.result import write_results

    package = "keras_mobile." + FLAGS.task
    report = importlib.import_module(f"{package}.report")
    evaluation = importlib.import_module(f"{package}.evaluation")
    module = _dense_module()
    info = result.info
    eval_split = config.eval_split or info.catalogue.eval_split
    train_split = config.train_split or info.catalogue.train_split
    start = time.perf_counter()
    model = module.trained_model(result)
    qat_model = module.trained_model(qat) if qat else None
    keras_metrics = evaluation.evaluate(model, info, eval_split)
    qat_metrics = evaluation.evaluate(qat_model, info, eval_split) if qat_model else None
    seconds["evaluation"] = time.perf_counter() - start
    exports = []
    if FLAGS.export or qat_model:
        start = time.perf_counter()
        # --smoke's model is untrained: near-ties that rounding flips, so the parity is
        # measured and reported but does not gate the files.
        exports = report.export_models(model, config.model_dir, FLAGS.export, info=info,
                                       eval_split=eval_split, calibration_split=train_split,
                                       qat_model=qat_model,
                                       tolerance=report.SMOKE_TOLERANCE if FLAGS.smoke else None)
        seconds["export"] = time.perf_counter() - start
    profile = profiling.profile(getattr(model, "inference_model", lambda: model)())
    if FLAGS.benchmark and any(e.error is None for e in exports):
        start = time.perf_counter()
        rows = report.benchmark(exports, model.name, profile.macs,
                                num_runs=10 if FLAGS.smoke else 50)
        write_results(rows, os.path.join(config.model_dir, "benchmark"))
        seconds["benchmark"] = time.perf_counter() - start
    picture = report.draw_validation(model, info, eval_split, config.model_dir)
    path = report.write_report(
        config.model_dir, record=result.record, history=result.history, exports=exports,
        keras_metrics=keras_metrics, seconds=seconds, machine=host.machine(),
        images_per_second=result.images_per_second, profile=profile,
        qat_history=qat.history if qat else None, qat_metrics=qat_metrics, picture=picture,
        class_names=info.class_names)
    print(f"Report: {path}")
    print(open(path, encoding="utf-8").read())


def run():
    run_main(main)


if __name__ == "__main__":
    run()
