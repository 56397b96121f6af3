"""Convert many registered models in many modes and time them together.

All graphs of one sweep are timed in one LiteRT process, interleaved in
rounds, so latency ratios between models (and against keras.applications
baselines, named ``keras.MobileNetV2``) come from one run.

Modes are the export modes, ``keras_mobile.export.EXPORT_MODES``; for
``"qat_int8"`` the model is made quantization-aware
(``keras_mobile.quantization.quantize_model(model)``, untrained: fine for
latency). keras.applications baselines skip the modes that go through
tfmot (``keras_mobile.export.TFMOT_MODES``: their graphs have no tf_keras twin).
"""

from __future__ import annotations

import os
from typing import NamedTuple

from keras_mobile.export import EXPORT_MODES, TFMOT_MODES, check_mode, conversion_mode

KERAS_PREFIX = "keras."
QAT_MODE = "qat_int8"


def keras_application(name: str, input_size: int):
    """``keras.applications.<name>(weights=None)`` at a static square size."""
    import keras

    builder = getattr(keras.applications, name, None)
    if builder is None:
        raise ValueError(f"Unknown keras.applications model {name!r}. Received: "
                         f"baseline={KERAS_PREFIX + name!r}")
    return builder(weights=None, input_shape=(input_size, input_size, 3))


def resolve(models) -> list[str]:
    """Expand comma-separated names and wildcards (``EMO*``) against the
    registry; ``keras.<Name>`` names pass through as baselines."""
    from keras_mobile import registry

    if isinstance(models, str):
        models = [m for m in models.split(",") if m.strip()]
    names = []
    for pattern in (m.strip() for m in models):
        if pattern.startswith(KERAS_PREFIX):
            names.append(pattern)
            continue
        found = registry.list_models(pattern) if any(c in pattern for c in "*?[") else []
        if not found:
            found = [registry.get_entry(pattern).name]  # raises with suggestions
        names += [n for n in found if n not in names]
    if not names:
        raise ValueError(f"models matched nothing. Received: models={models!r}")
    return names


class Graphs(NamedTuple):
    """Converted graphs and what each is, in timing order (``host.run_many``'s labels)."""

    paths: list
    models: list
    modes: list
    macs: list

    def __add__(self, other):
        return Graphs(*(a + b for a, b in zip(self, other, strict=True)))


def sweep(models, modes=("float32",), directory: str = "results", *, input_size: int = 224,
          num_threads: int = 1, num_runs: int = 50, warmup_runs: int = 10, rounds: int = 5,
          calibration_samples: int = 32, check: bool = True, log=print):
    """Build each model (random weights), convert it in each mode into
    ``directory/graphs/`` (:func:`convert_models`), time all graphs together and
    return the ``BenchmarkResult`` list (written with the report by the caller)."""
    from keras_mobile.benchmark import host

    graphs = convert_models(models, modes, directory, input_size=input_size,
                            calibration_samples=calibration_samples, check=check, log=log)
    return time_graphs(graphs, num_threads=num_threads, num_runs=num_runs,
                       warmup_runs=warmup_runs, rounds=rounds, log=log, runner=host.run_many)


def time_graphs(graphs: Graphs, *, num_threads: int, num_runs: int, warmup_runs: int,
                rounds: int, log=print, runner=None):
    """All of ``graphs`` timed together in one LiteRT process, interleaved in ``rounds``."""
    from keras_mobile.benchmark import host

    log(f"timing {len(graphs.paths)} graphs together: {num_runs} runs each in {rounds} "
        f"rounds, {num_threads} thread(s)")
    return (runner or host.run_many)(
        graphs.paths, num_threads=num_threads, num_runs=num_runs, warmup_runs=warmup_runs,
        rounds=rounds, models=graphs.models, modes=graphs.modes, macs=graphs.macs)


def convert_models(models, modes=("float32",), directory: str = "results", *,
                   input_size: int = 224, calibration_samples: int = 32, check: bool = True,
                   log=print) -> Graphs:
    """Build each model (random weights) and convert it in each mode into
    ``directory/graphs/<name>_<size>_<mode>.tflite``.

    int8 graphs are calibrated on synthetic images: fine for latency, not
    for accuracy.
    """
    import keras_mobile
    from keras_mobile import tflite
    from keras_mobile.data.samples import recalibrate_batchnorm, synthetic_images
    from keras_mobile.export import export

    names = resolve(models)
    modes = [m.strip() for m in (modes.split(",") if isinstance(modes, str) else modes)]
    for mode in modes:
        check_mode(mode, EXPORT_MODES, "modes")
    graphs_dir = os.path.join(directory, "graphs")
    os.makedirs(graphs_dir, exist_ok=True)
    shape = (input_size, input_size, 3)
    calibration = synthetic_images(calibration_samples, shape, seed=0)
    graphs = Graphs([], [], [], [])
    for name in names:
        if name.startswith(KERAS_PREFIX):
            model = keras_application(name[len(KERAS_PREFIX):], input_size)
        else:
            model = keras_mobile.get_model(name, weights=None, input_shape=shape)
        recalibrate_batchnorm(model, calibration[:8])  # image-dependent outputs
        count = keras_mobile.profile(model).macs
        for mode in modes:
            if mode in TFMOT_MODES and name.startswith(KERAS_PREFIX):
                log(f"{name}: {mode} is for keras_mobile models only; skipped")
                continue
            path = os.path.join(graphs_dir, f"{name}_{input_size}_{mode}.tflite")
            # Random weights: an untrained deep net is chaotic under rounding, so the
            # parity of quantized modes is reported, not gated.
            tolerance = tflite.Tolerance() if mode != "float32" else None
            source = model
            if mode == QAT_MODE:
                from keras_mobile.quantization import quantize_model

                source = quantize_model(model)  # the documented path: softmax kept
                # One training-mode pass sets the ranges a QAT fine-tune learns (the
                # weights', the input's). Left at tfmot's initial values, the input range
                # is degenerate and the converter adds a float DEQUANTIZE/QUANTIZE pair
                # at the input: a second partition, +0.14 ms on MobileNetV3Small.
                source(calibration[:8], training=True)
            int8 = conversion_mode(mode) == "int8"
            report = export(source, path, mode, check=check, tolerance=tolerance,
                            representative_data=calibration if int8 else None)
            log(report)
            graphs += Graphs([path], [name], [mode], [count])
    return graphs
