"""Host latency benchmark in the LiteRT interpreter, named like TFLite's
``benchmark_model`` (graph, num_threads, num_runs, warmup_runs, use_xnnpack).

Measurements run in a fresh child process that imports only numpy and LiteRT:
no TensorFlow thread pools compete with the timed invokes, and the memory
figure is the model's own (RSS growth from creating the interpreter through
the last invoke). Several graphs given together are timed in interleaved
rounds inside one process, so ratios between them are taken in one run.

Per graph: init (interpreter + allocation + delegate, which packs weights),
first invoke, then ``warmup_runs`` untimed and ``num_runs`` timed invokes with
inputs set outside the timed region; median/p90/min/max/mean/std in ms, and the
CPU-time / wall-time ratio of the timed region (well below 1 with one thread
means the machine was busy).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

_MARK = "keras_mobile.benchmark.host: "  # the child's error line


class BenchmarkError(RuntimeError):
    """The benchmark process failed; the message is one line naming the graph."""


class GraphError(Exception):
    """An error in the child, one line: ``<graph>: <Type>: <message>``."""


def _measure(graphs, num_threads, num_runs, warmup_runs, use_xnnpack, rounds, seed=0):
    """Runs in the child: numpy + LiteRT only. An error is re-raised as one line
    naming the graph it happened on (``GraphError``)."""
    where = [None]  # the graph being worked on, set outside the timed regions
    try:
        return _measure_all(graphs, num_threads, num_runs, warmup_runs, use_xnnpack, rounds,
                            seed, where)
    except Exception as error:
        text = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        raise GraphError(text if where[0] is None else f"{where[0]}: {text}") from error


def _measure_all(graphs, num_threads, num_runs, warmup_runs, use_xnnpack, rounds, seed, where):
    import importlib.util
    import resource

    import numpy as np

    # keras_mobile.tflite.runtime by file path: importing the package would import TF.
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tflite", "runtime.py")
    spec = importlib.util.spec_from_file_location("keras_mobile_runtime", path)
    runtime = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runtime)

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

    rng = np.random.default_rng(seed)
    states = []
    for graph in graphs:
        where[0] = graph
        before = rss_mb()
        t0 = time.perf_counter()
        it = runtime.interpreter(graph, num_threads=num_threads, use_xnnpack=use_xnnpack)
        init = time.perf_counter() - t0
        for detail in it.get_input_details():
            dtype = detail["dtype"]
            if np.issubdtype(dtype, np.integer):
                info = np.iinfo(dtype)
                data = rng.integers(info.min, info.max, detail["shape"], endpoint=True)
            else:
                data = rng.uniform(0, 255, detail["shape"])
            it.set_tensor(detail["index"], data.astype(dtype))
        t0 = time.perf_counter()
        it.invoke()
        first = time.perf_counter() - t0
        partitions, fully = runtime.delegation(it)
        states.append({"graph": graph, "it": it, "init": init, "first": first, "times": [],
                       "cpu": 0.0, "wall": 0.0, "rss_before": before, "partitions": partitions,
                       "fully": fully})
    for state in states:
        where[0] = state["graph"]
        for _ in range(warmup_runs):
            state["it"].invoke()
    per_round = [num_runs // rounds + (r < num_runs % rounds) for r in range(rounds)]
    for count in per_round:
        for state in states:
            it, times = state["it"], state["times"]
            where[0] = state["graph"]
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(count):
                t0 = time.perf_counter()
                it.invoke()
                times.append(time.perf_counter() - t0)
            state["cpu"] += time.process_time() - c0
            state["wall"] += time.perf_counter() - w0
    where[0] = None
    out = []
    for state in states:
        ms = np.asarray(state["times"]) * 1e3
        out.append({
            "init_ms": state["init"] * 1e3, "first_ms": state["first"] * 1e3,
            "median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "min_ms": float(ms.min()), "max_ms": float(ms.max()), "mean_ms": float(ms.mean()),
            "std_ms": float(ms.std()), "num_runs": len(ms),
            "cpu_wall_ratio": state["cpu"] / state["wall"] / num_threads,
            "memory_mb": rss_mb() - state["rss_before"] if len(states) == 1 else None,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
            "partitions": state["partitions"], "fully_delegated": state["fully"],
        })
    return out


def _check(graphs, num_threads, num_runs, warmup_runs, rounds):
    from keras_mobile.tflite.runtime import check_model_file  # parent only

    if isinstance(graphs, (str, os.PathLike)):
        graphs = [graphs]
    graphs = [os.fspath(g) for g in graphs]
    if not graphs:
        raise ValueError("graph must name at least one .tflite file. Received: graph=[]")
    for graph in graphs:
        check_model_file(graph, "graph")
    for name, value, low in (("num_threads", num_threads, 1), ("num_runs", num_runs, 1),
                             ("warmup_runs", warmup_runs, 0), ("rounds", rounds, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}. Received: {name}={value!r}")
    if rounds > num_runs:
        raise ValueError(f"rounds must be <= num_runs. Received: rounds={rounds}, "
                         f"num_runs={num_runs}")
    return graphs


def run_many(graphs, *, num_threads: int = 1, num_runs: int = 50, warmup_runs: int = 10,
             use_xnnpack: bool = True, rounds: int = 5, models=None, modes=None, macs=None,
             top1=None, timeout: float = 1800):
    """Benchmark several graphs in one child process, interleaved in ``rounds``;
    returns one ``BenchmarkResult`` per graph (``models``/``modes``/``macs``/
    ``top1``: optional per-graph lists recorded in the results).

    Raises:
        ValueError: a bad argument, or a graph that is missing, not a .tflite file, or
            truncated/corrupt (checked here, before the child process starts).
        BenchmarkError: the child process failed; one line naming the graph.
    """
    from keras_mobile.benchmark.result import BenchmarkResult, utc_now

    graphs = _check(graphs, num_threads, num_runs, warmup_runs, rounds)
    extras = {"models": models, "modes": modes, "macs": macs, "top1": top1}
    for name, values in extras.items():
        if values is not None and len(values) != len(graphs):
            raise ValueError(f"{name} must have one entry per graph ({len(graphs)}). "
                             f"Received {len(values)}.")
    args = json.dumps([graphs, num_threads, num_runs, warmup_runs, use_xnnpack, rounds])
    # One-thread BLAS/OpenMP: idle pool threads would spin and count as CPU time.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), args], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"The LiteRT benchmark process did not finish in {timeout} s "
                             f"(timing {', '.join(graphs)}).") from None
    if proc.returncode != 0:
        # The child's error is one marked stderr line naming the graph (see __main__);
        # a crash (a signal, no Python error) leaves LiteRT's own last line.
        lines = proc.stderr.strip().splitlines() or ["no error output"]
        marked = [line for line in lines if line.startswith(_MARK)]
        line = marked[-1][len(_MARK):] if marked else lines[-1]
        raise BenchmarkError(f"The LiteRT benchmark process failed (exit {proc.returncode}): "
                             f"{line[:500]}")
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    device, versions, date = machine(), _versions(), utc_now()
    results = []
    columns = {name: values or [None] * len(graphs) for name, values in extras.items()}
    for i, (graph, m) in enumerate(zip(graphs, measured, strict=True)):
        pick = {name: values[i] for name, values in columns.items()}.get
        results.append(BenchmarkResult(
            model=pick("models"), mode=pick("modes"), graph=graph, target="host",
            delegate="xnnpack" if use_xnnpack else "none", num_threads=num_threads,
            device=device, date=date, versions=versions, num_runs=m["num_runs"],
            warmup_runs=warmup_runs, model_size_mb=os.path.getsize(graph) / 1e6,
            init_ms=m["init_ms"], first_ms=m["first_ms"], median_ms=m["median_ms"],
            p90_ms=m["p90_ms"], min_ms=m["min_ms"], max_ms=m["max_ms"], mean_ms=m["mean_ms"],
            std_ms=m["std_ms"], peak_memory_mb=m["memory_mb"],
            cpu_wall_ratio=m["cpu_wall_ratio"],
            fully_delegated=m["fully_delegated"] if use_xnnpack else None,
            delegate_partitions=m["partitions"] if use_xnnpack else None,
            macs=pick("macs"), top1=pick("top1"),
            extra={"rounds": rounds, "process_peak_rss_mb": m["peak_rss_mb"]}))
    return results


def run(graph, *, num_threads: int = 1, num_runs: int = 50, warmup_runs: int = 10,
        use_xnnpack: bool = True, model: str | None = None, mode: str | None = None,
        macs: int | None = None, top1: float | None = None):
    """Benchmark one .tflite file on this host; returns a ``BenchmarkResult``."""
    return run_many([graph], num_threads=num_threads, num_runs=num_runs,
                    warmup_runs=warmup_runs, use_xnnpack=use_xnnpack, rounds=1,
                    models=[model], modes=[mode], macs=[macs], top1=[top1])[0]


def machine() -> str:
    """CPU model, logical cores and OS of this host, e.g. ``AMD EPYC, 2 cores, Linux x86_64``."""
    import platform

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


def _versions() -> dict:
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in ("keras_mobile", "ai-edge-litert", "tensorflow", "keras", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


if __name__ == "__main__":  # the child process: numpy + LiteRT only
    try:
        print(json.dumps(_measure(*json.loads(sys.argv[1]))))
    except GraphError as failure:  # the parent reports the last stderr line
        print(f"{_MARK}{failure}", file=sys.stderr)
        sys.exit(1)
