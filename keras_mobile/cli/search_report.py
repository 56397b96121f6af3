"""The host study of hardware-aware search (keras_mobile.search.report.run_study):
latency models for float32 and int8 at 1 thread against the MACs baseline, a search
under the latency of MobileNetV2-1.0, the papers' networks scaled to the same measured
latency, all trained with one recipe and several seeds, zero-cost proxies checked, the
roofline.

    python scripts/search_report.py --report=results/search-host --work_dir=runs/search-host

Everything measured or trained is stored in ``--work_dir`` as it completes: run it
again after an interruption and it resumes. Installed as ``keras-mobile-search-report``.
"""

from __future__ import annotations

from absl import flags

from keras_mobile.cli import fail, run_main

FLAGS = flags.FLAGS
flags.DEFINE_string("report", "results/search-host", "Folder for report.md, results.json and "
                    "the roofline charts.")
flags.DEFINE_string("work_dir", "runs/search-host", "Latency tables, the study's journal and "
                    "the training runs (resumable).")
flags.DEFINE_float("budget_ms", None, "Budget (default: measured MobileNetV2-1.0 at 64 px).")
flags.DEFINE_integer("n_models", 70, "Random networks per latency model.")
flags.DEFINE_integer("n_holdout", 50, "Held-out networks per latency model.")
flags.DEFINE_integer("trials", 10, "Candidates trained during the search.")
flags.DEFINE_integer("search_epochs", 3, "Epochs per search candidate.")
flags.DEFINE_integer("final_epochs", 6, "Epochs of the final comparison.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the final comparison.")
flags.DEFINE_string("data_dir", None, "tfds data dir.")
flags.DEFINE_bool("smoke", False, "Tiny study for tests: MobileNetV2 and MobileNetV3Small at "
                  "32-40 px, 6 + 4 networks per latency model, 2 trials, 1 epoch of 8 steps, "
                  "2 seeds, float32 only.")


def main(argv):
    del argv
    from keras_mobile.search import Space
    from keras_mobile.search.report import StudyConfig, run_study

    try:
        seeds = tuple(int(s) for s in FLAGS.seeds)
    except ValueError:
        fail(f"--seeds must be integers. Received: {FLAGS.seeds}")
    if FLAGS.smoke:
        config = StudyConfig(
            modes=("float32",), n_models=6, n_holdout=4, trials=2, search_epochs=1,
            final_epochs=1, final_picks=1, seeds=(0, 1), dataset="keras_mobile_shapes",
            data_dir=FLAGS.data_dir, train_steps=8, budget_ms=FLAGS.budget_ms,
            space=Space(families=("MobileNetV2", "MobileNetV3Small"), resolutions=(32, 40),
                        widths=(0.35, 0.5), depth_offsets=(0,), expansion_scales=(0.5, 1.0)))
    else:
        config = StudyConfig(n_models=FLAGS.n_models, n_holdout=FLAGS.n_holdout,
                             budget_ms=FLAGS.budget_ms, trials=FLAGS.trials,
                             search_epochs=FLAGS.search_epochs, final_epochs=FLAGS.final_epochs,
                             seeds=seeds, data_dir=FLAGS.data_dir)
    try:
        results = run_study(FLAGS.report, FLAGS.work_dir, config)
    except ValueError as error:
        fail(str(error))
    v = results["verdict"]
    print(f"wrote {FLAGS.report}/report.md (budget {results['budget_ms']:.3f} ms; "
          + (f"searched - best paper = {100 * v['gap']:+.2f} points, 2 x seed std "
             f"{200 * v['pooled_std']:.2f})" if v.get("decided") else "no verdict)"))


def run():
    run_main(main)


if __name__ == "__main__":
    run()
