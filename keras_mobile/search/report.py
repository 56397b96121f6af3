"""Reports of the search: one search's (``scripts/search.py``) and the host study
(``scripts/search_report.py``, ``results/search-host/``): latency models against the
MACs baseline per mode, the searched networks against the papers' networks scaled to
the same measured latency (one recipe, several seeds), the zero-cost proxies checked
against trained accuracy, and the roofline."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics

import numpy as np

from keras_mobile.search import latency as latency_lib
from keras_mobile.search import proxies
from keras_mobile.search.device import Device, Measurements
from keras_mobile.search.space import Arch, Space


def _write(path: str, text: str) -> str:
    from keras_mobile.files import atomic_path  # noqa: PLC0415

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _picks_table(picks, error) -> list[str]:
    lines = ["| network | accuracy | predicted ms | measured ms | measured / predicted |",
             "|---|---|---|---|---|"]
    for c in picks:
        ratio = c.measured_ms / c.predicted_ms
        ok = "" if np.isnan(error) else (" (within)" if abs(ratio - 1) <= error
                                         else " (**outside** the stated error)")
        lines.append(f"| {c.arch.name} | {c.accuracy:.4f} | {c.predicted_ms:.3f} | "
                     f"{c.measured_ms:.3f} | {ratio:.3f}{ok} |")
    return lines


def write_search(result, latency, path: str) -> str:
    """``report.md`` of one search."""
    v = latency.validate()
    lines = [f"# Search under {result.budget_ms} ms on {result.device_key}", "",
             "## Latency model (held-out networks)", "", str(v), "",
             f"Stated error (worst held-out): ±{100 * latency.error:.1f}%.", "",
             f"## Re-measured picks ({result.trials} proposals, {len(result.candidates)} "
             "trained)", "", *_picks_table(result.picks, latency.error), "",
             "Best: " + (f"{result.best.arch.name} (`{json.dumps(result.best.arch.to_dict())}`)"
                         if result.best else "none of the picks kept to the budget when "
                         "re-measured on the device."), ""]
    return _write(path, "\n".join(lines))


# --- the host study ------------------------------------------------------------------

STUDY_SPACE = Space()  # every family, 48-64 px, widths 0.35-1.0, EMO 1M / 2M
BASELINE_WIDTHS = tuple(round(0.25 + 0.05 * i, 2) for i in range(24))  # 0.25 .. 1.4
TOLERANCE = 0.05  # a scaled baseline's measured latency within budget * (1 - 5%) .. budget


@dataclasses.dataclass
class StudyConfig:
    modes: tuple = ("float32", "int8")
    search_mode: str = "float32"
    threads: int = 1
    n_models: int = 70
    n_holdout: int = 50
    budget_ms: float | None = None  # None: MobileNetV2-1.0 at the largest resolution
    trials: int = 10
    search_epochs: int = 3
    final_epochs: int = 6
    final_picks: int = 1
    seeds: tuple = (0, 1, 2)
    dataset: str = "keras_mobile_shapes_hard"
    data_dir: str | None = None
    train_steps: int = 0  # smoke: cap every training run
    space: Space = STUDY_SPACE


def scaled_baselines(space: Space, device: Device, budget_ms: float, latency, table,
                     progress=None) -> list[tuple[Arch, float]]:
    """Each family's paper network scaled (width; EMO: variant and resolution) to the
    budget: the scalings in order of predicted latency, measured from the one predicted
    nearest under the budget, stepping down while over it and up while more than
    ``TOLERANCE`` under it; the slowest measured within the budget is kept."""
    out = []
    top = max(space.resolutions)
    for family in space.families:
        if family == "EMO":
            scalings = [Arch("EMO", r, variant=v) for v in space.emo_variants
                        for r in range(32, top + 1, 8)]
        else:
            scalings = [Arch(family, top, w) for w in BASELINE_WIDTHS]
        scalings.sort(key=latency.predict)
        under = [i for i, a in enumerate(scalings) if latency.predict(a) <= budget_ms]
        i, measured = (under[-1] if under else 0), {}
        for _ in range(6):
            measured[i] = table.measure([scalings[i]])[0]
            if measured[i] > budget_ms and i > 0 and i - 1 not in measured:
                i -= 1
            elif measured[i] < budget_ms * (1 - TOLERANCE) and i + 1 < len(scalings) \
                    and i + 1 not in measured:
                i += 1
            else:
                break
        fits = [j for j in measured if measured[j] <= budget_ms]
        j = max(fits, key=measured.get) if fits else min(measured, key=measured.get)
        out.append((scalings[j], measured[j]))
        if progress:
            progress(f"baseline {scalings[j].name}: {measured[j]:.3f} ms "
                     f"(budget {budget_ms:.3f})")
    return out


def fit_latency(work_dir: str, config: StudyConfig, progress=print) -> tuple[dict, dict]:
    """The study's latency models, one per mode, fitted on random networks of the space
    and the papers' networks at width 1.0 (EMO: every variant) at the largest resolution;
    ``{mode: Device}``, ``{mode: LatencyModel}``."""
    space, top = config.space, max(config.space.resolutions)
    anchors = [Arch(f, top, 1.0) for f in space.families if f != "EMO"] + [
        Arch("EMO", top, variant=v) for v in space.emo_variants if "EMO" in space.families]
    devices, models = {}, {}
    for mode in config.modes:
        device = Device("host", threads=config.threads, mode=mode)
        model = latency_lib.LatencyModel.fit(
            space, device, n_models=config.n_models, n_holdout=config.n_holdout, seed=0,
            cache_dir=os.path.join(work_dir, "latency"),
            graph_dir=os.path.join(work_dir, "graphs"), extra=anchors, progress=progress)
        model.save(os.path.join(work_dir, f"latency-{mode}.json"))
        devices[mode], models[mode] = device, model
        progress(f"{mode}:\n{model.validate()}")
    return devices, models


def run_study(report_dir: str, work_dir: str, config: StudyConfig = StudyConfig(),
              progress=print) -> dict:
    """The host study (resumable: everything measured or trained is stored in
    ``work_dir`` as it completes). Writes ``report_dir``/report.md, results.json and the
    roofline charts."""
    from keras_mobile.benchmark.host import machine  # noqa: PLC0415
    from keras_mobile.benchmark.result import utc_now  # noqa: PLC0415
    from keras_mobile.search import find  # noqa: PLC0415

    space, cache = config.space, os.path.join(work_dir, "latency")
    graphs = os.path.join(work_dir, "graphs")
    results = {"machine": machine(), "date": utc_now(), "config": {
        k: v for k, v in dataclasses.asdict(config).items() if k != "space"},
        "space": dataclasses.asdict(space), "latency": {}}
    top = max(space.resolutions)
    devices, models = fit_latency(work_dir, config, progress)  # 1. measured first (quiet)
    for mode, model in models.items():
        results["latency"][mode] = {"device_key": devices[mode].key, **model.to_dict()}
    device, latency = devices[config.search_mode], models[config.search_mode]
    table = Measurements(device, cache, graphs)
    budget = config.budget_ms or table.measure([Arch("MobileNetV2", top, 1.0)])[0]
    results["budget_ms"] = budget
    baselines = scaled_baselines(space, device, budget, latency, table, progress)  # 2.
    result = find(space, device, budget, dataset=config.dataset, trials=config.trials,  # 3.
                  epochs=config.search_epochs, train_steps=config.train_steps,
                  latency=latency, workdir=os.path.join(work_dir, "search"),
                  data_dir=config.data_dir, cache_dir=cache, top_k=max(3, config.final_picks),
                  progress=progress)
    picks = [c for c in result.picks if c.measured_ms <= budget][:config.final_picks]
    finals = [("paper", a, ms) for a, ms in baselines] + [
        ("searched", c.arch, c.measured_ms) for c in picks]
    rows = []
    for kind, arch, ms in finals:  # 4. one recipe, several seeds
        accs = [proxies.train(arch, model_dir=proxies.model_dir(
                    os.path.join(work_dir, "final"), arch, seed, config.final_epochs),
                    dataset=config.dataset, data_dir=config.data_dir,
                    epochs=config.final_epochs, seed=seed, max_steps=config.train_steps)
                for seed in config.seeds]
        rows.append({"kind": kind, "name": arch.name, "arch": arch.to_dict(),
                     "measured_ms": ms, "predicted_ms": latency.predict(arch),
                     "accuracies": accs})
        progress(f"{kind} {arch.name}: {ms:.3f} ms, accuracy {np.mean(accs):.4f} ± "
                 f"{np.std(accs):.4f}")
    results["final"] = rows
    results["search"] = result.to_dict()
    results["verdict"] = verdict(rows)
    results["proxies"] = proxy_check(result.candidates, rows, config)  # 5.
    results["roofline"] = roofline_section(report_dir, work_dir, rows, config)  # 6.
    _write(os.path.join(report_dir, "results.json"), json.dumps(results, indent=1,
                                                                default=str))
    _write(os.path.join(report_dir, "report.md"), study_markdown(results))
    return results


def verdict(rows) -> dict:
    """Best searched vs best paper network: the gap in mean accuracy against twice the
    pooled standard deviation over seeds."""
    def mean(r):
        return float(np.mean(r["accuracies"]))

    papers = [r for r in rows if r["kind"] == "paper"]
    searched = [r for r in rows if r["kind"] == "searched"]
    if not papers or not searched:
        return {"decided": False}
    best_paper, best_searched = max(papers, key=mean), max(searched, key=mean)
    spread = [np.std(r["accuracies"], ddof=1) for r in rows if len(r["accuracies"]) > 1]
    pooled = float(np.sqrt(np.mean(np.square(spread)))) if spread else float("nan")
    gap = mean(best_searched) - mean(best_paper)
    return {"decided": True, "best_paper": best_paper["name"],
            "best_searched": best_searched["name"], "gap": gap, "pooled_std": pooled,
            "beats": bool(gap > 2 * pooled)}


def proxy_check(candidates, rows, config: StudyConfig) -> dict:
    """Zero-cost proxies at initialization against trained accuracy: over the search's
    candidates (short training) and over the final networks (mean over seeds)."""
    out = {}
    groups = {"search candidates": [(c.arch, c.accuracy) for c in candidates],
              "final networks": [(Arch.from_dict(r["arch"]), float(np.mean(r["accuracies"])))
                                 for r in rows]}
    batches, classes = {}, _classes(config)
    for proxy in proxies.PROXIES:
        for group, items in groups.items():
            scores = []
            for arch, _ in items:
                if arch.resolution not in batches:
                    batches[arch.resolution] = proxies.minibatch(
                        config.dataset, size=arch.resolution, data_dir=config.data_dir)
                images, labels = batches[arch.resolution]
                scores.append(proxies.score(arch, proxy, images, labels, classes=classes))
            out[f"{proxy} / {group}"] = proxies.rank_agreement(scores, [a for _, a in items])
    return out


def _classes(config: StudyConfig) -> int:
    from keras_mobile import data  # noqa: PLC0415

    return data.dataset_info(config.dataset, config.data_dir).num_classes


def roofline_section(report_dir, work_dir, rows, config: StudyConfig) -> dict:
    """Peaks per mode, and where the blocks of the best searched and the best paper
    network sit (markdown + charts)."""
    from keras_mobile.search import roofline  # noqa: PLC0415

    out = {"markdown": []}
    best = {}
    for r in rows:
        if r["kind"] not in best or np.mean(r["accuracies"]) > np.mean(
                best[r["kind"]]["accuracies"]):
            best[r["kind"]] = r
    for mode in config.modes:
        peaks = roofline.measure_peaks(config.threads, mode)
        out[mode] = {"macs_per_ms": peaks.macs_per_ms, "bytes_per_ms": peaks.bytes_per_ms,
                     "ridge": peaks.ridge}
        for kind, r in best.items():
            model = Arch.from_dict(r["arch"]).build(classes=10)
            graph = os.path.join(work_dir, f"roofline-{kind}-{mode}.tflite")
            from keras_mobile.search.device import convert  # noqa: PLC0415

            convert(model, graph, mode)
            rows_ = roofline.blocks(model, mode)
            chart = f"roofline-{kind}-{mode}.png"
            roofline.plot(rows_, peaks, os.path.join(report_dir, chart),
                          title=f"{r['name']} ({mode}, {config.threads} thread)")
            out["markdown"].append(f"### {r['name']} ({kind}, {mode})\n\n![]({chart})\n\n"
                                   + roofline.report(model, peaks, mode, graph, rows=rows_))
    return out


def study_markdown(results: dict) -> str:
    cfg = results["config"]
    lines = ["# Hardware-aware search on this host",
             "", f"Generated by `python scripts/search_report.py` on {results['date']} "
             f"({results['machine']}, LiteRT + XNNPACK, {cfg['threads']} thread).", "",
             "## 1. Latency models: held-out error against the MACs baseline", ""]
    for mode, d in results["latency"].items():
        v = latency_lib.LatencyModel.from_dict(d).validate()
        met = v.met()
        lines += [f"### {mode}", "", f"Fitted on {d['fit_count']} measured networks "
                  f"(random points of the space and the papers' networks at "
                  f"{max(results['space']['resolutions'])} px), checked on "
                  f"{v.model.n} other random ones. Goals: mean error ≤ 5% "
                  f"({'met' if met['mean_abs'] else 'not met'}), ≥ 90% within ±10% "
                  f"({'met' if met['within_10'] else 'not met'}), Kendall τ ≥ 0.9 "
                  f"({'met' if met['kendall_tau'] else 'not met'}).", "", str(v), "",
                  "Coefficients (ms per unit; MACs in millions, elements in thousands): "
                  + ", ".join(f"{k} {c:.3g}" for k, c in d["coefficients"].items() if c)
                  + f", per invoke {d['intercept']:.3g}.", ""]
    budget = results["budget_ms"]
    lines += ["## 2. Searched networks against the papers' networks at the same latency", "",
              f"Budget: {budget:.3f} ms ({cfg['search_mode']}, measured latency of "
              "MobileNetV2-1.0 at the largest resolution unless set). Each family's paper "
              "network is scaled (width; EMO: variant and resolution) to the largest "
              "measured latency within the budget. Search: Optuna TPE with the latency "
              f"constraint, {cfg['trials']} trained candidates × {cfg['search_epochs']} "
              f"epochs on `{cfg['dataset']}`; the picks re-measured. Final: every network "
              f"trained {cfg['final_epochs']} epochs with one recipe (the main job's AdamW "
              f"cosine), seeds {list(cfg['seeds'])}.", "",
              "| | network | measured ms | predicted ms | accuracy (mean ± std over seeds) | "
              "per seed |", "|---|---|---|---|---|---|"]
    for r in sorted(results["final"], key=lambda r: -np.mean(r["accuracies"])):
        accs = r["accuracies"]
        std = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        lines.append(f"| {r['kind']} | {r['name']} | {r['measured_ms']:.3f} | "
                     f"{r['predicted_ms']:.3f} | {np.mean(accs):.4f} ± {std:.4f} | "
                     f"{', '.join(f'{a:.4f}' for a in accs)} |")
    v = results["verdict"]
    if v.get("decided"):
        lines += ["", f"**Verdict:** best searched {v['best_searched']} − best paper "
                  f"{v['best_paper']} = {100 * v['gap']:+.2f} points; twice the pooled seed "
                  f"std = {200 * v['pooled_std']:.2f} points: the searched network "
                  + ("**beats** the best hand-designed one by more than twice the seed spread."
                     if v["beats"] else "does **not** beat the best hand-designed one by more "
                     "than twice the seed spread."), ""]
    s = results["search"]
    lines += ["### Search picks (re-measured on the device)", "",
              f"{s['trials']} proposals, {len(s['candidates'])} trained; the latency "
              f"model's stated error ±{100 * s['latency_error']:.1f}%.", "",
              "| network | short-training accuracy | predicted ms | measured ms |",
              "|---|---|---|---|"]
    for c in s["picks"]:
        lines.append(f"| {c['name']} | {c['accuracy']:.4f} | {c['predicted_ms']:.3f} | "
                     f"{c['measured_ms']:.3f} |")
    lines += ["", "Best searched architecture: `" + json.dumps(
        s["best"]["arch"] if s["best"] else None) + "`", "",
        "## 3. Zero-cost proxies against trained accuracy", "",
        "Scores at initialization on one minibatch of 64 training images; rank agreement "
        "with the trained accuracy. A proxy is trusted only with Kendall τ ≥ 0.5 on both "
        "groups; the search uses short training.", "",
        "| proxy / networks | n | Kendall τ | Spearman ρ |", "|---|---|---|---|"]
    for name, d in results["proxies"].items():
        lines.append(f"| {name} | {d['n']} | {d['kendall_tau']:.3f} | {d['spearman_rho']:.3f} |")
    lines += ["", "## 4. Roofline", ""]
    for mode in results["latency"]:
        p = results["roofline"].get(mode)
        if p:
            lines.append(f"- {mode}: compute peak {p['macs_per_ms'] / 1e6:.1f} GMAC/s, memory "
                         f"{p['bytes_per_ms'] / 1e6:.1f} GB/s, ridge {p['ridge']:.2f} MAC/B")
    lines += ["", *results["roofline"]["markdown"]]
    return "\n".join(lines) + "\n"
