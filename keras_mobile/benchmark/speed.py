"""The speed report: every family in every export mode at 1 thread, the float32
ratios against keras.applications and the official models converted to TFLite,
the int8 speed-ups in several sweeps, and training throughput.

    python scripts/speed_report.py --report=results/host-speed \
        --official_dir=/path/to/official_tflite      # optional: the converted official models

Each sweep times every graph once more, all interleaved in one LiteRT process
(``sweep.time_graphs``), so each ratio has one value per sweep; the report
gives every sweep's value, not a best one.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os

from keras_mobile.benchmark.sweep import Graphs, convert_models, time_graphs

FAMILIES = ("MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "MobileNeXt",
            "EfficientNetB0", "EfficientNetB0Sandglass", "EMO1M", "EMO2M", "EMO5M")
MODES = ("float32", "float16", "int8", "int8_percentile", "qat_int8")
INT8_MODES = ("int8", "int8_percentile", "qat_int8")
ANCHOR = "keras.MobileNetV2"  # the float32 ratios' denominator
# keras_mobile model -> its keras.applications twin (float32: ours ÷ theirs).
KERAS_TWINS = {"MobileNetV2": "keras.MobileNetV2", "MobileNetV3Small": "keras.MobileNetV3Small",
               "MobileNetV3Large": "keras.MobileNetV3Large",
               "EfficientNetB0": "keras.EfficientNetB0"}
# keras_mobile model -> the official model's float32 file in --official_dir.
OFFICIAL_FILES = {"EMO1M": "emo_1m.tflite", "EMO2M": "emo_2m.tflite", "EMO5M": "emo_5m.tflite",
                  "MobileNeXt": "mobilenext_1.0.tflite"}
OFFICIAL_PREFIX = "official."
# Issue 21's goals: float32 time ÷ keras.applications MobileNetV2's, and int8 speed-ups.
FLOAT32_GOALS = {"EMO1M": 1.09, "EMO2M": 1.77, "EMO5M": 2.82, "MobileNeXt": 1.00}
TWIN_GOAL = 1.02
INT8_GOALS = {"EMO1M": 1.6}  # the conv families: CONV_INT8_GOAL
CONV_INT8_GOAL = 1.8
TRAINING_MODELS = ("EMO1M", "MobileNetV2")
# Models whose float32 and int8 graphs get a per-kernel perf profile (kernels.py).
KERNEL_PROFILES = ("EMO1M", "MobileNetV2", "MobileNetV3Small", "EfficientNetB0Sandglass")
PROFILED_MODES = ("float32", "int8", "qat_int8")


@dataclasses.dataclass
class SpeedReport:
    sweeps: list  # one list of BenchmarkResult per sweep, in graph order
    training: dict  # model -> images/s
    official_note: str
    settings: dict
    kernels: dict = dataclasses.field(default_factory=dict)  # "model mode" -> {kind: ms}
    kernels_note: str = ""

    def latency(self, model: str, mode: str) -> list[float]:
        return [next(r.median_ms for r in sweep if r.model == model and r.mode == mode)
                for sweep in self.sweeps]

    def partitions(self, model: str, mode: str) -> int:
        return next(r.delegate_partitions for r in self.sweeps[0]
                    if r.model == model and r.mode == mode)

    def has(self, model: str, mode: str) -> bool:
        return any(r.model == model and r.mode == mode for r in self.sweeps[0])

    def ratios(self, numerator: tuple, denominator: tuple) -> list[float]:
        return [a / b for a, b in zip(self.latency(*numerator), self.latency(*denominator),
                                      strict=True)]


def official_graphs(official_dir: str | None, graphs: Graphs,
                    input_size: int) -> tuple[Graphs, str]:
    """The official models' float32 files found in ``official_dir`` at ``input_size``
    (NCHW or NHWC), labelled ``official.<Model>`` (MACs: our model's), and a line
    saying what was found."""
    if not official_dir:
        return Graphs([], [], [], []), ("No official models: pass --official_dir with "
                                        "emo_1m.tflite ... (see docs/benchmarks.md).")
    if not os.path.isdir(official_dir):
        raise ValueError(f"official_dir must be a folder. Received: official_dir={official_dir!r}")
    from keras_mobile.tflite.inspect import inspect
    from keras_mobile.tflite.runtime import check_model_file

    found, other_size = Graphs([], [], [], []), []
    for model, file in OFFICIAL_FILES.items():
        path = os.path.join(official_dir, file)
        if os.path.exists(path) and model in graphs.models:
            check_model_file(path, "official_dir file")
            if list(inspect(path).inputs[0].shape).count(input_size) < 2:
                other_size.append(file)
                continue
            macs = graphs.macs[graphs.models.index(model)]
            found += Graphs([path], [OFFICIAL_PREFIX + model], ["float32"], [macs])
    how = os.path.join(official_dir, "HOW.md")
    note = (f"Official models from {official_dir}: "
            f"{', '.join(found.models) or 'none of ' + ', '.join(OFFICIAL_FILES.values())}"
            + (f"; not at {input_size} px, left out: {', '.join(other_size)}" if other_size
               else "")
            + (" (how they were built: its HOW.md, quoted below)." if os.path.exists(how) else "."))
    return found, note


def training_throughput(model: str, *, image_size: int, batch_size: int, steps: int,
                        data_dir: str | None = None) -> float:
    """Images/s of the training engine on ``model`` (AdamW, from the second step on:
    the first traces), on the embedded dataset resized to ``image_size``, in a fresh
    run (a finished run would train nothing)."""
    import tempfile

    from keras_mobile.training import engine, recipes

    recipe = recipes.MAIN_JOB.replace(source="throughput", batch_size=batch_size, epochs=1,
                                      optimizer="adamw", ema_decay=0.0)
    with tempfile.TemporaryDirectory() as model_dir:
        config = engine.TrainConfig(model=model, recipe=recipe, image_size=image_size,
                                    model_dir=model_dir, data_dir=data_dir, max_steps=steps,
                                    verbose=0)
        images_per_second = float(engine.train(config).images_per_second)
    if not images_per_second > 0:
        raise RuntimeError(f"No training throughput measured for {model} in {steps} steps.")
    return images_per_second


def run(directory: str, *, official_dir: str | None = None, families=FAMILIES, modes=MODES,
        input_size: int = 224, sweeps: int = 3, num_runs: int = 50, warmup_runs: int = 10,
        rounds: int = 5, train_steps: int = 12, train_image_size: int = 224,
        train_batch_size: int = 32, training_models=TRAINING_MODELS, data_dir=None,
        kernel_profiles=KERNEL_PROFILES, log=print) -> SpeedReport:
    """Convert, time ``sweeps`` times, measure training; write ``directory``'s report."""
    from keras_mobile.data.samples import check_count

    for name, value in (("sweeps", sweeps), ("num_runs", num_runs), ("rounds", rounds)):
        check_count(name, value)
    if train_steps < 2 and training_models:
        raise ValueError(f"train_steps must be at least 2 (the first step traces). "
                         f"Received: train_steps={train_steps!r}")
    official_graphs(official_dir, Graphs([], list(families), [], [0] * len(families)),
                    input_size)  # checked before the long work
    graphs = convert_models(list(families), modes, directory, input_size=input_size, log=log)
    twins = sorted({KERAS_TWINS[f] for f in families if f in KERAS_TWINS} | {ANCHOR})
    graphs += convert_models(twins, ("float32",), directory, input_size=input_size, log=log)
    official, note = official_graphs(official_dir, graphs, input_size)
    graphs += official
    results = []
    for sweep in range(sweeps):
        log(f"sweep {sweep + 1} of {sweeps}")
        results.append(time_graphs(graphs, num_threads=1, num_runs=num_runs,
                                   warmup_runs=warmup_runs, rounds=rounds, log=log))
    training = {}
    for model in training_models:
        training[model] = training_throughput(
            model, image_size=train_image_size, batch_size=train_batch_size, steps=train_steps,
            data_dir=data_dir)
        log(f"training {model}: {training[model]:.1f} images/s")
    profiles, kernels_note = {}, ""
    if kernel_profiles:
        from keras_mobile.benchmark import kernels

        if kernels.available():
            for model in kernel_profiles:
                for mode in PROFILED_MODES:
                    pairs = list(zip(graphs.models, graphs.modes, strict=True))
                    if (model, mode) in pairs:
                        log(f"kernel profile: {model} {mode}")
                        profiles[f"{model} {mode}"] = kernels.profile(
                            graphs.paths[pairs.index((model, mode))])
        else:
            kernels_note = "perf is not available here: no kernel profile."
    report = SpeedReport(results, training, note, kernels=profiles, kernels_note=kernels_note,
                         settings=dict(
        input_size=input_size, sweeps=sweeps, num_runs=num_runs, warmup_runs=warmup_runs,
        rounds=rounds, train_steps=train_steps, train_image_size=train_image_size,
        train_batch_size=train_batch_size, official_dir=official_dir,
        kernel_profiles=list(kernel_profiles)))
    write(report, directory)
    return report


def write(report: SpeedReport, directory: str) -> str:
    """``report.md`` and ``results.json`` (every sweep's results) in ``directory``."""
    from keras_mobile.benchmark.host import _versions, machine
    from keras_mobile.files import atomic_write

    first = report.sweeps[0]
    models = list(dict.fromkeys(r.model for r in first))
    n = len(report.sweeps)
    lines = [
        "# keras_mobile speed report",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- Machine: {machine()}; 1 thread, LiteRT + XNNPACK, random weights, "
        f"{report.settings['input_size']} px",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in sorted(_versions().items()))}",
        f"- {n} sweeps; each times every graph {report.settings['num_runs']} times in "
        f"{report.settings['rounds']} interleaved rounds, all graphs in one process. "
        "Values are medians in ms; `a / b / c` lists the sweeps.",
        f"- {report.official_note}",
        "",
        "## Latency by mode (ms, XNNPACK partitions)",
        "",
    ]
    modes = list(dict.fromkeys(r.mode for r in first))
    lines += ["| Model | " + " | ".join(modes) + " |", "|---" * (len(modes) + 1) + "|"]
    for model in models:
        cells = _cells(report, model, modes, lambda m, mode: _series(report.latency(m, mode)))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")

    if report.has(ANCHOR, "float32"):
        lines += ["", f"## Float32 ÷ {ANCHOR} float32", "",
                  "| Model | keras_mobile | official model, converted | keras_mobile ÷ official "
                  "| goal |", "|---|---|---|---|---|"]
        for model in models:
            if model.startswith(("keras.", OFFICIAL_PREFIX)) or not report.has(model, "float32"):
                continue
            ours = report.ratios((model, "float32"), (ANCHOR, "float32"))
            official = OFFICIAL_PREFIX + model
            theirs = (report.ratios((official, "float32"), (ANCHOR, "float32"))
                      if report.has(official, "float32") else None)
            versus = (_series(report.ratios((model, "float32"), (official, "float32")))
                      if theirs else "")
            goal = FLOAT32_GOALS.get(model)
            lines.append(f"| {model} | {_series(ours)} | {_series(theirs) if theirs else ''} | "
                         f"{versus} | {f'≤ {goal:.2f}' if goal else ''} |")
        lines += ["", "## keras_mobile ÷ the same keras.applications model (float32)", "",
                  "| Model | ratio | goal |", "|---|---|---|"]
        for model, twin in KERAS_TWINS.items():
            if report.has(model, "float32") and report.has(twin, "float32"):
                lines.append(f"| {model} | "
                             f"{_series(report.ratios((model, 'float32'), (twin, 'float32')))} "
                             f"| ≤ {TWIN_GOAL:.2f} |")

    lines += ["", "## Int8 speed-up: float32 ms ÷ int8 ms (XNNPACK partitions)", "",
              "| Model | " + " | ".join(m for m in INT8_MODES if m in modes) + " | goal |",
              "|---" * (sum(m in modes for m in INT8_MODES) + 2) + "|"]
    for model in models:
        if not report.has(model, "float32") or model.startswith(("keras.", OFFICIAL_PREFIX)):
            continue
        cells = _cells(report, model, [m for m in INT8_MODES if m in modes],
                       lambda m, mode: _series(report.ratios((m, "float32"), (m, mode))) + "×")
        goal = INT8_GOALS.get(model, None if model.startswith("EMO") else CONV_INT8_GOAL)
        lines.append(f"| {model} | " + " | ".join(cells)
                     + f" | {f'≥ {goal:.1f}×' if goal else ''} |")

    if report.training:
        s = report.settings
        lines += ["", f"## Training throughput (keras_mobile's engine, all cores, batch "
                      f"{s['train_batch_size']}, {s['train_image_size']} px, AdamW, "
                      f"{s['train_steps']} steps, the first one excluded)", "",
                  "| Model | images/s |", "|---|---|"]
        lines += [f"| {m} | {v:.1f} |" for m, v in report.training.items()]
    if report.kernels or report.kernels_note:
        lines += ["", "## Where the time goes: ms per invoke by kernel kind (perf samples, "
                      "keras_mobile.benchmark.kernels)", ""]
        if report.kernels_note:
            lines.append(report.kernels_note)
        else:
            columns = list(report.kernels)
            kinds = list(dict.fromkeys(k for profile in report.kernels.values() for k in profile))
            lines += ["| Kernel kind | " + " | ".join(columns) + " |",
                      "|---" * (len(columns) + 1) + "|"]
            for name in kinds:
                lines.append(f"| {name} | " + " | ".join(
                    f"{report.kernels[c].get(name, 0.0):.2f}" for c in columns) + " |")
            lines.append("| total | " + " | ".join(
                f"{sum(report.kernels[c].values()):.2f}" for c in columns) + " |")
            lines.append(_kernel_ratios(report.kernels, columns))
            lines += ["", "Last two rows: float32 total ÷ this graph's total, then the speed-up "
                      "these kernels allow (`kernels.bound`: every kernel kind at the faster of "
                      "its float32 and int8 times, conversions free)."]
    how = os.path.join(report.settings.get("official_dir") or "", "HOW.md")
    if report.settings.get("official_dir") and os.path.exists(how):
        with open(how) as f:
            lines += ["", "## How the official models were built (their HOW.md)", "",
                      *("> " + line if line.strip() else ">" for line in f.read().splitlines())]
    text = "\n".join(lines) + "\n"
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "report.md")
    atomic_write(path, text)
    atomic_write(os.path.join(directory, "results.json"), json.dumps(
        {"settings": report.settings, "training_images_per_second": report.training,
         "kernels_ms": report.kernels,
         "official": report.official_note,
         "sweeps": [[r.to_dict() for r in sweep] for sweep in report.sweeps]}, indent=1))
    return path


def _kernel_ratios(profiles: dict, columns: list) -> str:
    from keras_mobile.benchmark.kernels import bound

    measured, allowed = [], []
    for column in columns:
        model, mode = column.rsplit(" ", 1)
        base = profiles.get(f"{model} float32")
        if mode == "float32" or base is None:
            measured.append("")
            allowed.append("")
            continue
        measured.append(f"{sum(base.values()) / sum(profiles[column].values()):.2f}×")
        allowed.append(f"{bound(base, profiles[column]):.2f}×")
    return ("| float32 ÷ this | " + " | ".join(measured) + " |\n"
            "| kernel bound | " + " | ".join(allowed) + " |")


def _cells(report: SpeedReport, model: str, modes, values) -> list[str]:
    """One table cell per mode: ``values(model, mode)`` and the XNNPACK partitions, blank
    where the model has no graph in that mode."""
    return [f"{values(model, mode)} ({report.partitions(model, mode)})"
            if report.has(model, mode) else "" for mode in modes]


def _series(values) -> str:
    return " / ".join(f"{v:.2f}" for v in values)
