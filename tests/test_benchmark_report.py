"""BenchmarkResult schema, results.json/csv round trips and the markdown/PNG report."""

import json
import os
import struct

import pytest

from keras_mobile.benchmark import BenchmarkResult, read_results, write_report, write_results
from keras_mobile.benchmark import result as result_module

HOST = "Intel(R) Xeon(R) CPU @ 2.20GHz (2 cores)"
PHONE = "Pixel 7 (Android 14, gs201)"


def make(**overrides):
    fields = dict(model="MobileNetV2", mode="float32", graph="/tmp/mobilenet_v2.tflite",
                  target="host", delegate="xnnpack", num_threads=2, device=HOST,
                  date="2025-11-21T10:00:00+00:00", versions={"ai-edge-litert": "2.3.0"},
                  num_runs=50, warmup_runs=10, model_size_mb=13.98, init_ms=61.3, first_ms=14.2,
                  median_ms=9.2, p90_ms=9.9, min_ms=9.05, max_ms=11.9, mean_ms=9.26, std_ms=0.31,
                  peak_memory_mb=44.7, cpu_wall_ratio=1.93, fully_delegated=True,
                  delegate_partitions=1, macs=300_774_272, top1=0.7182, extra={"note": "a|b"})
    fields.update(overrides)
    return BenchmarkResult(**fields)


@pytest.fixture
def results():
    return [
        make(),
        make(mode="int8", median_ms=4.1, p90_ms=4.6, mean_ms=4.2, model_size_mb=3.9, top1=0.709,
             date="2025-11-21T10:05:00+00:00"),
        make(model="EMO1M", macs=261_000_000, median_ms=7.5, p90_ms=8.0, mean_ms=7.6, top1=None,
             fully_delegated=False, delegate_partitions=4),
        make(target="android", delegate="gpu", num_threads=4, device=PHONE, median_ms=None,
             p90_ms=None, mean_ms=5.18159, init_ms=279.214, cpu_wall_ratio=None,
             fully_delegated=False, delegate_partitions=3, top1=None,
             versions={"android": "14"}, date="2025-11-21T11:00:00+00:00"),
    ]


# ----------------------------------------------------------------------------- schema


@pytest.mark.parametrize("field, value, message", [
    ("delegate", "gpux",
     "delegate must be one of xnnpack, none, gpu, nnapi. Received: delegate='gpux'"),
    ("target", "ios", "target must be one of host, android. Received: target='ios'"),
    ("mode", "int4",
     "mode must be one of float32, float16, dynamic, int8, int8_percentile, qat_int8. "
     "Received: mode='int4'"),
])
def test_bad_choice_values(field, value, message):
    with pytest.raises(ValueError) as info:
        make(**{field: value})
    assert str(info.value) == message


def test_int_fields_reject_other_types():
    with pytest.raises(TypeError, match="Received: num_threads='4'"):
        make(num_threads="4")


def test_from_dict_moves_unknown_keys_to_extra_and_names_missing_ones():
    data = make().to_dict()
    data["gpu_driver"] = "535.1"
    restored = BenchmarkResult.from_dict(data)
    assert restored.extra == {"note": "a|b", "gpu_driver": "535.1"}
    assert restored.median_ms == 9.2
    old = {k: v for k, v in make().to_dict().items() if k not in ("top1", "macs", "extra")}
    assert BenchmarkResult.from_dict(old).top1 is None  # files older than a field still load
    del old["mean_ms"]
    with pytest.raises(ValueError, match=r"needs the fields \['mean_ms'\]"):
        BenchmarkResult.from_dict(old)


def test_latency_is_the_median_else_the_mean(results):
    assert [r.latency_ms for r in results] == [9.2, 4.1, 7.5, 5.18159]


def test_write_and_read_round_trip_json_and_csv(results, tmp_path):
    json_path, csv_path = write_results(results, tmp_path / "out")
    assert (json_path, csv_path) == (str(tmp_path / "out" / "results.json"),
                                     str(tmp_path / "out" / "results.csv"))
    assert sorted(os.listdir(tmp_path / "out")) == ["results.csv", "results.json"]  # no temp
    assert read_results(tmp_path / "out") == results
    assert read_results(csv_path) == results
    with open(csv_path) as f:
        header = f.readline().strip().split(",")
    assert header == BenchmarkResult.csv_header()
    assert header[:3] == ["model", "mode", "graph"] and header[-1] == "extra"
    with open(json_path) as f:
        assert json.load(f)["results"][3]["median_ms"] is None


def test_write_results_to_a_named_json_path(results, tmp_path):
    json_path, csv_path = write_results(results[:1], str(tmp_path / "pixel7.json"))
    assert csv_path == str(tmp_path / "pixel7.csv")
    assert read_results(json_path)[0].model == "MobileNetV2"


def test_a_failed_write_keeps_the_old_file(results, tmp_path, monkeypatch):
    write_results(results[:1], tmp_path)
    before = (tmp_path / "results.json").read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(result_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_results(results, tmp_path)
    assert (tmp_path / "results.json").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["results.csv", "results.json"]


# ----------------------------------------------------------------------------- report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24]), len(data)


def table(markdown):
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in rows[0].strip("|").split(" | ")]
    cells = [[c.strip() for c in row.strip("|").split(" | ")] for row in rows[1:]]
    return [dict(zip(header, row, strict=True)) for row in cells]


def test_report_table_header_and_plots(results, tmp_path):
    paths = write_report(results, tmp_path / "report", title="Mobile latency")
    assert set(paths) == {"report", "latency_vs_macs", "latency_vs_top1", "results_json",
                          "results_csv"}
    markdown = open(paths["report"]).read()
    assert markdown.startswith("# Mobile latency\n")
    assert "- Date: 2025-11-21T10:00:00+00:00 … 2025-11-21T11:00:00+00:00" in markdown
    assert f"- Devices: {HOST}; {PHONE}" in markdown
    assert "- Versions: ai-edge-litert 2.3.0, android 14" in markdown
    rows = table(markdown)
    assert len(rows) == 4
    by_key = {(r["Model"], r["Mode"], r["Target"]): r for r in rows}
    host = by_key[("MobileNetV2", "float32", "host")]
    assert host == {"Model": "MobileNetV2", "Mode": "float32", "Target": "host", "Device": HOST,
                    "Delegate": "xnnpack", "Threads": "2", "Median ms": "9.20", "Mean ms": "9.26",
                    "p90 ms": "9.90", "Init ms": "61.30", "Size MB": "13.98", "MACs (M)": "300.8",
                    "Top-1": "0.7182", "Delegation": "full"}
    assert by_key[("MobileNetV2", "int8", "host")]["Median ms"] == "4.10"
    assert by_key[("EMO1M", "float32", "host")]["Delegation"] == "partial (4)"
    phone = by_key[("MobileNetV2", "float32", "android")]
    assert (phone["Median ms"], phone["Mean ms"], phone["Init ms"], phone["Top-1"]) == (
        "—", "5.18", "279.21", "—")
    assert (phone["Delegate"], phone["Threads"], phone["Delegation"]) == ("gpu", "4", "partial (3)")
    assert [r["Model"] for r in rows] == ["EMO1M", "MobileNetV2", "MobileNetV2", "MobileNetV2"]

    for name in ("latency_vs_macs", "latency_vs_top1"):
        (width, height), size = png_size(paths[name])
        assert (width, height) == (880, 605)  # 8 x 5.5 inches at 110 dpi
        assert size > 10_000  # markers, labels and a legend, not a blank canvas
    assert read_results(paths["results_json"]) == results


def test_report_without_top1_or_second_device(results, tmp_path):
    host_only = [r for r in results if r.top1 is None and r.target == "host"]
    paths = write_report(host_only, tmp_path)
    assert "latency_vs_top1" not in paths
    assert not os.path.exists(tmp_path / "latency_vs_top1.png")
    rows = table(open(paths["report"]).read())
    assert "Top-1" not in rows[0] and "Device" not in rows[0]
    assert rows[0]["MACs (M)"] == "261.0"
    png_size(paths["latency_vs_macs"])


def test_report_needs_results(tmp_path):
    with pytest.raises(ValueError, match="at least one BenchmarkResult"):
        write_report([], tmp_path)
