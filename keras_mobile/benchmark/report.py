"""A markdown report and latency plots from :class:`BenchmarkResult` lists.

:func:`write_report` writes, atomically, into one folder: ``report.md`` (a header
with dates, devices and versions, then one table row per result),
``latency_vs_macs.png``, ``latency_vs_top1.png`` when any result has a top-1
accuracy, and ``results.json``/``results.csv`` (:func:`write_results`).

Plots use matplotlib's Agg canvas directly (no pyplot, no global backend switch).
Latency is :attr:`BenchmarkResult.latency_ms`: the median, or the mean where the
tool printed no median.
"""

from __future__ import annotations

import io
import math
import os

from keras_mobile.benchmark.result import BenchmarkResult, write_results
from keras_mobile.files import atomic_write

_MARKERS = "osD^v<>ph*"


def _cell(value, fmt="{:.2f}"):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return fmt.format(value).replace("|", "\\|")


def _delegation(r: BenchmarkResult) -> str:
    if r.fully_delegated:
        return "full"
    if r.fully_delegated is False:
        return f"partial ({r.delegate_partitions})" if r.delegate_partitions else "none"
    return "—"


def _joined(values) -> str:
    return "; ".join(dict.fromkeys(v for v in values if v)) or "—"


def _markdown(results, title) -> str:
    dates = sorted(r.date for r in results)
    versions = {}
    for r in results:
        for key, value in r.versions.items():
            versions.setdefault(key, []).append(value)
    with_top1 = any(r.top1 is not None for r in results)
    lines = [f"# {title}", "",
             f"- Date: {dates[0]}" + (f" … {dates[-1]}" if dates[-1] != dates[0] else ""),
             f"- Devices: {_joined(r.device for r in results)}",
             "- Versions: " + (", ".join(f"{k} {_joined(v)}" for k, v in sorted(versions.items()))
                               or "—"),
             "", "Times in ms. Median and p90 are blank where the tool printed none "
             "(LiteRT results block, APK logcat of old builds); the mean is always measured.",
             ""]
    header = ["Model", "Mode", "Target", "Delegate", "Threads", "Median ms", "Mean ms", "p90 ms",
              "Init ms", "Size MB", "MACs (M)"] + (["Top-1"] if with_top1 else []) + ["Delegation"]
    if len({r.device for r in results}) > 1:
        header.insert(3, "Device")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = sorted(results, key=lambda r: (r.model or "", r.mode or "", r.target, r.delegate,
                                           r.num_threads))
    for r in order:
        row = [_cell(r.model, "{}"), _cell(r.mode, "{}"), r.target, r.delegate,
               str(r.num_threads), _cell(r.median_ms), _cell(r.mean_ms), _cell(r.p90_ms),
               _cell(r.init_ms), _cell(r.model_size_mb),
               _cell(None if r.macs is None else r.macs / 1e6, "{:.1f}")]
        row += [_cell(r.top1, "{:.4g}")] if with_top1 else []
        row.append(_delegation(r))
        if "Device" in header:
            row.insert(3, _cell(r.device, "{}"))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _config(r: BenchmarkResult) -> str:
    return f"{r.target} · {r.delegate} · {r.num_threads} thr · {r.device}"


def _plot(results, x_of, y_of, *, xlabel, ylabel, title, loglog) -> bytes:
    """One marker per result: colour = configuration, shape = mode, label = model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(8, 5.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    points = [(x_of(r), y_of(r), r) for r in results]
    points = [(x, y, r) for x, y, r in points if x is not None and y is not None]
    configs = list(dict.fromkeys(_config(r) for _, _, r in points))
    modes = list(dict.fromkeys(r.mode or "?" for _, _, r in points))
    colors = {c: f"C{i % 10}" for i, c in enumerate(configs)}
    markers = {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(modes)}
    for x, y, r in points:
        ax.scatter([x], [y], color=colors[_config(r)], marker=markers[r.mode or "?"], s=40)
        ax.annotate(r.model or os.path.basename(r.graph), (x, y), xytext=(4, 3),
                    textcoords="offset points", fontsize=7)
    if not points:
        ax.text(0.5, 0.5, "no result has both values", ha="center", va="center",
                transform=ax.transAxes)
    elif loglog:
        from matplotlib.ticker import LogFormatter

        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(LogFormatter(labelOnlyBase=False))
            axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))
    handles = ([Line2D([], [], color=colors[c], marker="o", linestyle="", label=c)
                for c in configs]
               + [Line2D([], [], color="black", marker=markers[m], linestyle="", label=m)
                  for m in modes])
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="best")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_report(results, directory: str, *, title: str = "keras_mobile benchmark") -> dict:
    """Writes ``report.md``, the latency plots and ``results.json``/``.csv`` into ``directory``.

    Args:
        results: an iterable of :class:`BenchmarkResult` (host and Android may mix).
        directory: output folder, created if needed.
        title: the report's heading.

    Returns:
        A dict of the written paths: ``report``, ``latency_vs_macs``,
        ``latency_vs_top1`` (only when a result has ``top1``), ``results_json``,
        ``results_csv``.

    Example:
        >>> write_report(read_results("results/pixel7"), "results/pixel7")  # doctest: +SKIP
    """
    results = list(results)
    if not results:
        raise ValueError("results must hold at least one BenchmarkResult. Received: []")
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ImportError("write_report draws its plots with matplotlib: "
                          "`pip install matplotlib`.") from e
    json_path, csv_path = write_results(results, directory)
    paths = {"results_json": json_path, "results_csv": csv_path,
             "report": os.path.join(directory, "report.md"),
             "latency_vs_macs": os.path.join(directory, "latency_vs_macs.png")}
    atomic_write(paths["report"], _markdown(results, title))
    atomic_write(paths["latency_vs_macs"], _plot(
        results, lambda r: None if r.macs is None else r.macs / 1e6, lambda r: r.latency_ms,
        xlabel="million MACs per image", ylabel="latency (ms)",
        title=f"{title}: latency vs MACs (log-log)", loglog=True))
    if any(r.top1 is not None for r in results):
        paths["latency_vs_top1"] = os.path.join(directory, "latency_vs_top1.png")
        atomic_write(paths["latency_vs_top1"], _plot(
            results, lambda r: r.latency_ms, lambda r: r.top1, xlabel="latency (ms)",
            ylabel="top-1 accuracy", title=f"{title}: top-1 vs latency", loglog=False))
    return paths
