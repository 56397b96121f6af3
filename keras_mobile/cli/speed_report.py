"""The speed report (keras_mobile.benchmark.speed): every family in every export mode
at 1 thread, float32 ratios against keras.applications and the official models,
int8 speed-ups in several sweeps, training images/s.

    python scripts/speed_report.py --report=results/host-speed \
        --official_dir=/path/to/official_tflite

``--official_dir`` holds the official PyTorch models converted to TFLite
(``emo_1m.tflite``, ``emo_2m.tflite``, ``emo_5m.tflite``, ``mobilenext_1.0.tflite``,
and a ``HOW.md`` saying how; docs/benchmarks.md). Installed as
``keras-mobile-speed-report``.
"""

from __future__ import annotations

from absl import flags

from keras_mobile.cli import fail, run_main

FLAGS = flags.FLAGS
flags.DEFINE_string("report", "results/host-speed", "Folder for report.md, results.json and "
                    "the converted graphs.")
flags.DEFINE_string("official_dir", None, "Folder of the official models' float32 .tflite "
                    "files (optional).")
flags.DEFINE_list("models", None, "Families to time (default: keras_mobile.benchmark.speed."
                  "FAMILIES).")
flags.DEFINE_list("modes", None, "Export modes (default: float32, float16, int8, "
                  "int8_percentile, qat_int8).")
flags.DEFINE_integer("sweeps", 3, "How many times every graph is timed (each sweep interleaved).")
flags.DEFINE_integer("num_runs", 50, "Timed invokes per graph and sweep.")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds per sweep.")
flags.DEFINE_integer("train_steps", 12, "Training steps per model for images/s (0: none).")
flags.DEFINE_list("kernel_profiles", None, "Models whose float32 / int8 / qat_int8 graphs get a "
                  "perf profile by kernel kind (needs Linux perf; default: keras_mobile."
                  "benchmark.speed.KERNEL_PROFILES).")
flags.DEFINE_string("data_dir", None, "tfds data dir for the training measurement.")
flags.DEFINE_bool("smoke", False, "Tiny report for tests: 64 px, 2 sweeps of 3 runs, "
                  "training at 64 px, 3 steps, batch 8.")


def main(argv):
    del argv
    from keras_mobile.benchmark import speed

    smoke = FLAGS.smoke
    training = () if not FLAGS.train_steps else (
        (FLAGS.models or speed.TRAINING_MODELS)[:1] if smoke else speed.TRAINING_MODELS)
    profiles = speed.KERNEL_PROFILES if FLAGS.kernel_profiles is None else FLAGS.kernel_profiles
    try:
        report = speed.run(
            FLAGS.report, official_dir=FLAGS.official_dir,
            families=FLAGS.models or speed.FAMILIES, modes=FLAGS.modes or speed.MODES,
            input_size=64 if smoke else 224, sweeps=2 if smoke else FLAGS.sweeps,
            num_runs=3 if smoke else FLAGS.num_runs, warmup_runs=1 if smoke else 10,
            rounds=1 if smoke else FLAGS.rounds,
            train_steps=3 if smoke else FLAGS.train_steps,
            train_image_size=64 if smoke else 224, train_batch_size=8 if smoke else 32,
            training_models=training, data_dir=FLAGS.data_dir, kernel_profiles=profiles)
    except ValueError as error:
        fail(str(error))
    print(f"wrote {FLAGS.report}/report.md ({len(report.sweeps)} sweeps)")


def run():
    run_main(main)


if __name__ == "__main__":
    run()
