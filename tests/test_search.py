"""keras_mobile.search: the space holds the papers' networks, latency models fitted on a
stand-in device with a known latency function (real converted graphs) and on this host,
the search end to end (real training, re-measured picks), resuming, and clear errors."""

import json
import math
import os

import numpy as np
import pytest

import keras_mobile as km
from keras_mobile import search
from keras_mobile.search import Arch, Device, LatencyModel, Space
from keras_mobile.search.device import Measurements
from keras_mobile.tflite.inspect import parse_subgraph, read_model

SMALL = Space(families=("MobileNetV2", "MobileNetV3Small"), resolutions=(32, 40),
              widths=(0.35, 0.5))


def stand_in_ms(path: str) -> float:
    """A known latency function of a real .tflite graph: a per-invoke and a per-op cost,
    output elements, and convolution MACs at two rates (depthwise 4x slower per MAC)."""
    graph = parse_subgraph(read_model(path)[0])
    ms = 0.01
    for op in graph.ops:
        out = math.prod(op.outputs[0].shape)
        ms += 0.002 + 2e-7 * out
        if op.name == "CONV_2D":
            _, kh, kw, cin = op.inputs[1].shape
            ms += 1e-8 * out * kh * kw * cin
        elif op.name == "DEPTHWISE_CONV_2D":
            _, kh, kw, _ = op.inputs[1].shape
            ms += 4e-8 * out * kh * kw
    return ms


class StandIn:
    """Times graphs with :func:`stand_in_ms` and counts what it was asked."""

    def __init__(self):
        self.graphs = []

    def __call__(self, paths):
        self.graphs += list(paths)
        return [stand_in_ms(p) for p in paths]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A latency model of the stand-in device on SMALL (14 + 6 networks, converted once
    into a shared graph folder)."""
    root = tmp_path_factory.mktemp("latency")
    timer = StandIn()
    device = Device("stand-in", measure=timer, version="1")
    model = LatencyModel.fit(SMALL, device, n_models=14, n_holdout=6, cache_dir=str(root),
                             graph_dir=str(root / "graphs"))
    return model, device, timer, root


# --- the space -------------------------------------------------------------------------

@pytest.mark.parametrize("arch, builder, kwargs", [
    (Arch("MobileNetV2", 32, 0.5), "MobileNetV2", dict(alpha=0.5)),
    (Arch("MobileNetV3Small", 40, 0.75), "MobileNetV3Small", dict(alpha=0.75)),
    (Arch("MobileNetV3Large", 32, 1.0), "MobileNetV3Large", {}),
    (Arch("MobileNeXt", 32, 0.35, identity_multiplier=1 / 6), "MobileNeXt",
     dict(alpha=0.35, identity_multiplier=1 / 6)),
    (Arch("EMO", 64, variant="2M"), "EMO2M", {}),
])
def test_papers_networks_are_points(arch, builder, kwargs):
    """An unedited Arch is the registry's network: same parameters and MACs."""
    ours = arch.build(classes=10)
    size = (arch.resolution, arch.resolution, 3)
    reference = getattr(km, builder)(input_shape=size, weights=None, classes=10, **kwargs)
    assert arch.is_paper() and not arch.name.endswith("*")
    assert ours.count_params() == reference.count_params()
    assert km.profile(ours).macs == km.profile(reference).macs


def test_space_papers_include_every_family_variant():
    papers = Space().papers()
    names = {a.name for a in papers}
    assert "MobileNeXt-1.00-id0.50@64" in names and "EMO-2M@48" in names
    assert "MobileNetV3Large-0.35@56" in names and "MobileNetV2-1.00@64" in names
    # 3 resolutions x (V2, V3S, V3L: 4 widths; MobileNeXt 4 widths x 4 identity; EMO 2)
    assert len(papers) == 3 * (3 * 4 + 16 + 2)
    assert all(a.is_paper() for a in papers)


def test_stage_edits_change_the_network():
    base = Arch("MobileNetV2", 32, 0.5)
    edited = Arch("MobileNetV2", 32, 0.5, depth_offsets=(1, -1, 0, 0, 0),
                  expansion_scales=(1.0, 0.5, 1.0, 1.0, 1.0), kernels=(3, 3, 5, 3, 3))
    a, b = base.build(), edited.build()
    blocks = lambda m: sorted({layer.name.split("_")[0] for layer in m.layers  # noqa: E731
                               if layer.name.startswith("block")})
    # stage 2 (index 1) 2 -> 3 blocks, stage 3: 3 -> 2
    assert [s for s in blocks(a) if s.startswith("block2")] == ["block2a", "block2b"]
    assert [s for s in blocks(b) if s.startswith("block2")] == ["block2a", "block2b",
                                                                  "block2c"]
    assert [s for s in blocks(b) if s.startswith("block3")] == ["block3a", "block3b"]
    # stage 3's expansion halved: 6 -> 3 times the input width (block3a's input is 16)
    assert a.get_layer("block3a_expand_conv").filters == 96
    assert b.get_layer("block3a_expand_conv").filters == 48
    assert b.get_layer("block4a_dw_conv").kernel_size == (5, 5)
    assert not edited.is_paper() and edited.name == "MobileNetV2-0.50@32*"
    assert edited.key != base.key and Arch.from_dict(edited.to_dict()) == edited


def test_emo_attention_and_mobilenext_reduction_edits():
    emo = Arch("EMO", 64, variant="1M", attention=(False, True, False, True))
    model = emo.build()
    attention = sorted({layer.name.split("_")[0] for layer in model.layers
                        if layer.name.endswith("_attn")})
    assert attention == ["block2b", "block4b", "block4c"]  # stage 2 on, stage 3 off
    mnext = Arch("MobileNeXt", 32, 1.0, expansion_scales=(0.5, 1.0, 1.0, 1.0, 1.0))
    # stage 3's bottleneck (the official rule: 192 // 6 = 32) halved
    assert Arch("MobileNeXt", 32, 1.0).build().get_layer("block3b_reduce_conv").filters == 32
    assert mnext.build().get_layer("block3b_reduce_conv").filters == 16


@pytest.mark.parametrize("kwargs, message", [
    (dict(families=("ResNet",)), "families must be among"),
    (dict(resolutions=()), "resolutions needs at least one choice"),
    (dict(resolutions=(16,)), "resolutions must be >= 32"),
    (dict(depth_offsets=(1, 2)), "depth_offsets must contain 0"),
    (dict(widths=(0.5, 0.5)), "widths has repeated choices"),
    (dict(emo_variants=("3M",)), "emo_variants must be among"),
])
def test_space_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Space(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(family="VGG", resolution=64), "family must be one of"),
    (dict(family="EMO", resolution=64), "EMO needs variant"),
    (dict(family="MobileNetV2", resolution=64, kernels=(3, 3)), "one entry per searchable"),
    (dict(family="MobileNetV2", resolution=64, attention=(True,) * 5), "EMO only"),
    (dict(family="MobileNetV2", resolution=8), "resolution must be an int >= 32"),
])
def test_arch_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Arch(**kwargs)


# --- devices and latency models ---------------------------------------------------------

@pytest.mark.parametrize("args, kwargs, message", [
    (("phone",), {}, 'target must be "host" or "adb:SERIAL"'),
    (("adb:",), {}, "adb targets name a serial"),
    (("host",), dict(mode="int4"), "mode must be one of"),
    (("host",), dict(threads=0), "threads must be an int >= 1"),
])
def test_device_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Device(*args, **kwargs)


def test_unreachable_phone_fails_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no adb on PATH
    device = Device("adb:0123456789", mode="int8")
    with pytest.raises(ValueError, match=r"device 'adb:0123456789' is not reachable: "
                                         r"FileNotFoundError: adb was not found"):
        LatencyModel.fit(SMALL, device, n_models=4, n_holdout=0, cache_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_latency_model_on_a_stand_in_device(fitted):
    """NNLS on kernel features recovers the known function far better than MACs."""
    model, device, timer, root = fitted
    v = model.validate()
    assert v.model.n == 6 and model.fit_count == 14
    assert v.model.mean_abs < 0.05 and v.model.within_10 == 1.0
    macs_only = v.baselines[0]
    assert macs_only.name.startswith("MACs only") and macs_only.mean_abs > 3 * v.model.mean_abs
    assert model.error == v.model.max_abs < 0.10
    assert len(timer.graphs) == 20  # each network converted and timed once
    lines = (root / f"{device.key}.jsonl").read_text().splitlines()
    assert len(lines) == 20 and all(json.loads(line)["ms"] > 0 for line in lines)
    # Predictions: exact features of the real graph, so the held-out error is what it says
    arch = Arch("MobileNetV3Small", 40, 0.5)
    graph = str(root / "check.tflite")
    search.device.convert(arch.build(), graph, "float32")
    assert abs(model.predict(arch) / stand_in_ms(graph) - 1) < 0.10


def test_latency_table_resumes_and_model_round_trips(fitted, tmp_path):
    model, device, timer, root = fitted
    before = len(timer.graphs)
    with open(root / f"{device.key}.jsonl", "a") as f:
        f.write('{"key": "torn')  # a killed write
    again = LatencyModel.fit(SMALL, device, n_models=14, n_holdout=6, cache_dir=str(root))
    assert len(timer.graphs) == before  # nothing measured again
    assert again.coefficients == model.coefficients
    path = str(tmp_path / "latency.json")
    model.save(path)
    loaded = LatencyModel.load(path)
    arch = Arch("MobileNetV2", 32, 0.35)
    assert loaded.predict(arch) == pytest.approx(model.predict(arch))
    assert loaded.validate().model == model.validate().model


# --- the search -------------------------------------------------------------------------

def test_smoke_search(fitted, shapes_data_dir, tmp_path):
    """2 trials of real (8-step) training; the picks are re-measured, the best builds and
    converts, and its measured latency is within the latency model's stated error."""
    model, device, timer, root = fitted
    budget = sorted(model.predict(a) for a in SMALL.papers())[3]
    result = search.find(SMALL, device, budget, latency=model, dataset="keras_mobile_shapes",
                         data_dir=shapes_data_dir, trials=2, epochs=1, train_steps=8,
                         workdir=str(tmp_path / "work"), cache_dir=str(root), top_k=2,
                         progress=None)
    assert len(result.candidates) == 2 and result.trials >= 2
    for c in result.candidates:
        assert c.predicted_ms <= budget and 0.0 <= c.accuracy <= 1.0
    for c in result.picks:
        assert abs(c.measured_ms / c.predicted_ms - 1) <= model.error
    best = result.best
    assert best is not None and best.measured_ms <= budget
    keras_model = best.build(classes=10)
    graph = str(tmp_path / "best.tflite")
    report = km.tflite.convert(keras_model, graph, mode="float32")
    assert report.parity.max_abs_diff < 1e-4
    assert abs(stand_in_ms(graph) / best.predicted_ms - 1) <= model.error
    saved = json.loads((tmp_path / "work" / "result.json").read_text())
    assert saved["best"]["arch"] == best.arch.to_dict()
    runs = os.listdir(tmp_path / "work" / "runs")
    assert len(runs) == 2 and all(
        os.path.exists(tmp_path / "work" / "runs" / r / "accuracy.json") for r in runs)


def test_search_resumes_an_interrupted_trial(fitted, tmp_path):
    """A trial left RUNNING by a killed process is failed and its network trained first;
    trials already trained are not trained again."""
    import optuna

    model, device, _, root = fitted
    budget = max(model.predict(a) for a in SMALL.papers())
    trained = []

    def accuracy(arch, model_dir, seed):
        trained.append(arch.key)
        return 0.5 + 0.01 * len(trained)

    kwargs = dict(latency=model, trials=2, workdir=str(tmp_path), cache_dir=str(root),
                  top_k=1, accuracy=accuracy, progress=None)
    first = search.find(SMALL, device, budget, **kwargs)
    assert len(trained) == 2
    # A killed process: a trial asked for and never told.
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.journal")))
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0],
                              storage=storage)
    orphan = study.ask()
    arch = SMALL.suggest(orphan)
    second = search.find(SMALL, device, budget, **{**kwargs, "trials": 3})
    states = {t.number: t.state for t in study.get_trials()}
    assert states[orphan.number] == optuna.trial.TrialState.FAIL
    assert len(trained) == 3 and trained[2] == arch.key  # the orphan's network, retried
    assert len(second.candidates) == 3 and first.candidates[0].arch in [
        c.arch for c in second.candidates]


def test_budget_below_the_fastest_network_fails_before_training(fitted, tmp_path):
    model, device, _, root = fitted

    def accuracy(*_):
        raise AssertionError("trained")

    with pytest.raises(ValueError, match=r"budget_ms=0.001 is below the fastest network of "
                                         r"the space on Device\('stand-in'.*MobileNetV.*@32\* "
                                         r"measures 0\.\d+ ms"):
        search.find(SMALL, device, 0.001, latency=model, workdir=str(tmp_path / "w"),
                    cache_dir=str(root), accuracy=accuracy, progress=None)
    assert not os.path.exists(tmp_path / "w")
    with pytest.raises(ValueError, match="budget_ms must be a positive number"):
        search.find(SMALL, device, -1.0, latency=model, accuracy=accuracy)
    with pytest.raises(ValueError, match="trials must be an int >= 1"):
        search.find(SMALL, device, 1.0, latency=model, trials=0, accuracy=accuracy)


# --- proxies ----------------------------------------------------------------------------

def test_zero_cost_proxies_score_untrained_networks():
    from keras_mobile.search import proxies

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    labels = np.arange(16) % 10
    small, large = Arch("MobileNetV2", 32, 0.35), Arch("MobileNetV2", 32, 1.0)
    scores = {(a.width, p): proxies.score(a, p, images, labels, classes=10)
              for a in (small, large) for p in proxies.PROXIES}
    assert all(np.isfinite(v) for v in scores.values())
    assert scores[(0.35, "naswot")] != scores[(1.0, "naswot")]
    assert proxies.score(small, "naswot", images, labels, classes=10) == scores[(0.35, "naswot")]
    agreement = proxies.rank_agreement([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4])
    assert agreement == {"n": 4, "kendall_tau": 1.0, "spearman_rho": 1.0}
    assert proxies.rank_agreement([1, 2], [0.2, 0.1])["n"] == 2
    with pytest.raises(ValueError, match="proxy must be one of"):
        proxies.score(small, "synflow", images, labels, classes=10)


# --- the real host (slow tier) ----------------------------------------------------------

@pytest.mark.slow
def test_host_calibration(fitted, tmp_path):
    """The real runtime: a few networks measured on this host at 1 thread (the graphs of
    the stand-in fit reused), cached under a key naming the mode and runtime version."""
    _, _, _, root = fitted
    device = Device("host", threads=1, mode="float32", num_runs=10, rounds=2)
    assert device.key.endswith(f"-t1-float32-litert{device.version}")
    model = LatencyModel.fit(SMALL, device, n_models=14, n_holdout=6, cache_dir=str(tmp_path),
                             graph_dir=str(root / "graphs"))
    table = Measurements(device, str(tmp_path))
    assert len(table.entries) == 20 and all(0 < e["ms"] < 50 for e in table.entries.values())
    v = model.validate()
    assert v.model.mean_abs < 0.25 and model.intercept >= 0
    assert all(c >= 0 for c in model.coefficients.values())


# --- the script -------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--budget_ms=1", "--families=ResNet"], "families must be among"),
    (["--budget_ms=0.0001", "--families=MobileNetV3Small", "--resolutions=32",
      "--widths=0.35"], r"budget_ms=0.0001 is below the fastest network of the space on "
                        r"Device\('host', threads=1, mode='float32'\): "
                        r"MobileNetV3Small-0.35@32\* measures 0\.\d+ ms"),
])
def test_search_script_errors(args, message, tmp_path):
    """One line on stderr, exit 1, before any training (the second measures the space's
    fastest network on this host first)."""
    import re

    from conftest import run_script

    proc = run_script("search.py", *args, f"--workdir={tmp_path / 'w'}",
                      f"--cache_dir={tmp_path / 'cache'}")
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("search.py: error: ") and re.search(message, last), last
    assert not os.path.exists(tmp_path / "w")


def test_study_verdict_against_twice_the_seed_spread():
    from keras_mobile.search.report import verdict

    rows = [{"kind": "paper", "name": "A", "accuracies": [0.50, 0.52, 0.54]},
            {"kind": "paper", "name": "B", "accuracies": [0.40, 0.41, 0.42]},
            {"kind": "searched", "name": "S", "accuracies": [0.60, 0.62, 0.64]}]
    v = verdict(rows)
    assert (v["best_paper"], v["best_searched"]) == ("A", "S")
    assert v["gap"] == pytest.approx(0.10)
    # sample stds 0.02, 0.01, 0.02 -> pooled sqrt(mean of squares) = 0.01732
    assert v["pooled_std"] == pytest.approx(np.sqrt((0.02**2 + 0.01**2 + 0.02**2) / 3))
    assert v["beats"] is True
    rows[2]["accuracies"] = [0.53, 0.55, 0.57]
    assert verdict(rows)["beats"] is False  # +0.03 < 2 x 0.0173
    assert verdict(rows[:2]) == {"decided": False}
