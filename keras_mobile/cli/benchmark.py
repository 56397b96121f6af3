"""Latency benchmarks of .tflite models: this host (LiteRT) or an Android phone (adb).

    python scripts/benchmark.py --graph=emo1m_int8.tflite --num_threads=1       # host
    python scripts/benchmark.py --graph=emo1m_int8.tflite --target=android --serial=R58M... \
        --benchmark_binary=/path/to/android_aarch64_benchmark_model --use_gpu=true
    python scripts/benchmark.py --models='EMO*,MobileNetV2,keras.MobileNetV2' \
        --modes=float32,int8 --report=results/                               # sweep + report

Flags follow TFLite's ``benchmark_model``. ``--models`` builds registered models
(and keras.applications baselines named ``keras.<Name>``) with random weights,
converts each in each ``--modes``, times all graphs together in interleaved
rounds (ratios from one run), and writes results.json/csv, report.md and plots
to ``--report``. Installed as ``keras-mobile-benchmark``.
"""

from __future__ import annotations

from absl import flags

from keras_mobile.cli import fail, run_main

FLAGS = flags.FLAGS
flags.DEFINE_list("graph", [], "The .tflite file(s) to time.")
flags.DEFINE_string("models", None, "Sweep: registered names/patterns, keras.<Name> baselines.")
flags.DEFINE_list("modes", ["float32"], "Sweep: export modes (keras_mobile.export."
                  "EXPORT_MODES; qat_int8: the untrained quantization-aware model, int8).")
flags.DEFINE_integer("input_size", 224, "Sweep: square input size.")
flags.DEFINE_string("report", None, "Folder for results.json/csv, report.md and plots.")
flags.DEFINE_enum("target", "host", ["host", "android"], "Where to run.")
flags.DEFINE_integer("num_threads", 1, "Threads (host: 1 is the primary figure).")
flags.DEFINE_integer("num_runs", 50, "Timed invokes per graph.")
flags.DEFINE_integer("warmup_runs", 10, "Untimed invokes before timing.")
flags.DEFINE_integer("rounds", 5, "Host: interleaved rounds when timing several graphs.")
flags.DEFINE_bool("use_xnnpack", True, "Use the XNNPACK delegate.")
flags.DEFINE_string("serial", None, "Android: adb serial (default: the only attached device).")
flags.DEFINE_string("benchmark_binary", None, "Android: a benchmark_model binary to push.")
flags.DEFINE_bool("benchmark_apk", False, "Android: use the benchmark APK (installed or given).")
flags.DEFINE_bool("use_gpu", False, "Android: GPU delegate.")
flags.DEFINE_bool("gpu_precision_loss_allowed", True, "Android: GPU fp16 precision.")
flags.DEFINE_string("gpu_backend", None, "Android: cl or gl.")
flags.DEFINE_bool("use_nnapi", False, "Android: NNAPI delegate (deprecated on Android 15+).")
flags.DEFINE_string("nnapi_accelerator_name", None, "Android: NNAPI accelerator.")
flags.DEFINE_bool("require_full_delegation", False, "Android: fail unless fully delegated.")
flags.DEFINE_string("taskset", None, "Android: CPU mask for taskset, e.g. f0 (big cores).")
flags.DEFINE_bool("smoke", False, "Tiny sweep for tests: 64 px, 5 runs.")


def main(argv):
    del argv
    from keras_mobile import benchmark
    from keras_mobile.benchmark import host, sweep

    if bool(FLAGS.graph) == bool(FLAGS.models):
        fail("Give either --graph (files to time) or --models (a sweep).")
    if FLAGS.models and FLAGS.target != "host":
        fail("--models sweeps run on the host; convert first, then time "
             "the files with --graph on Android.")
    try:
        if FLAGS.models:
            results = sweep.sweep(
                FLAGS.models, FLAGS.modes, FLAGS.report or "results",
                input_size=64 if FLAGS.smoke else FLAGS.input_size,
                num_threads=FLAGS.num_threads, num_runs=5 if FLAGS.smoke else FLAGS.num_runs,
                warmup_runs=1 if FLAGS.smoke else FLAGS.warmup_runs,
                rounds=1 if FLAGS.smoke else FLAGS.rounds)
        elif FLAGS.target == "android":
            results = [benchmark.run_android(
                graph, serial=FLAGS.serial, benchmark_binary=FLAGS.benchmark_binary,
                benchmark_apk=FLAGS.benchmark_apk, num_threads=FLAGS.num_threads,
                num_runs=FLAGS.num_runs, warmup_runs=FLAGS.warmup_runs,
                use_xnnpack=FLAGS.use_xnnpack, use_gpu=FLAGS.use_gpu,
                gpu_precision_loss_allowed=FLAGS.gpu_precision_loss_allowed,
                gpu_backend=FLAGS.gpu_backend, use_nnapi=FLAGS.use_nnapi,
                nnapi_accelerator_name=FLAGS.nnapi_accelerator_name,
                require_full_delegation=FLAGS.require_full_delegation, taskset=FLAGS.taskset)
                for graph in FLAGS.graph]
        else:
            results = host.run_many(FLAGS.graph, num_threads=FLAGS.num_threads,
                                    num_runs=FLAGS.num_runs, warmup_runs=FLAGS.warmup_runs,
                                    use_xnnpack=FLAGS.use_xnnpack,
                                    rounds=min(FLAGS.rounds, FLAGS.num_runs))
    except (ValueError, RuntimeError) as error:  # RuntimeError: LiteRT's process, adb
        fail(str(error))
    for r in results:
        print(f"{r.model or r.graph} {r.mode or ''} [{r.target}/{r.delegate}, {r.num_threads} "
              f"thread(s)]: median {r.median_ms} ms, p90 {r.p90_ms}, min {r.min_ms:.3f}, "
              f"std {r.std_ms:.3f}, init {r.init_ms}, {r.model_size_mb:.2f} MB, "
              f"partitions {r.delegate_partitions}, cpu/wall {r.cpu_wall_ratio}")
    if FLAGS.report:
        paths = benchmark.write_report(results, FLAGS.report)
        print("wrote", ", ".join(str(p) for p in paths.values()))


def run():
    run_main(main)


if __name__ == "__main__":
    run()
