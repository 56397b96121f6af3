"""Hardware-aware search (keras_mobile.search): the most accurate network of a space under
a latency budget on a device, trained briefly on a tfds dataset.

    python scripts/search.py --budget_ms=0.4 --mode=float32 --threads=1 \
        --families=MobileNetV2,MobileNeXt,EMO --trials=20 --workdir=runs/search

Run it again with the same flags and it resumes: measured latencies are cached per
device (``--cache_dir``), trials are stored in ``--workdir``'s Optuna journal, and each
candidate's training resumes from its checkpoint. Writes ``--workdir``/report.md,
result.json and latency.json. Installed as ``keras-mobile-search``.
"""

from __future__ import annotations

from absl import flags

from keras_mobile.cli import fail, run_main

FLAGS = flags.FLAGS
flags.DEFINE_float("budget_ms", None, "Latency budget in ms per image on the device.")
flags.DEFINE_string("device", "host", 'Where latency is measured: "host" or "adb:SERIAL".')
flags.DEFINE_integer("threads", 1, "Runtime threads.")
flags.DEFINE_enum("mode", "float32", ["float32", "int8"], "How candidates are converted.")
flags.DEFINE_list("families", None, "Families of the space (default: all).")
flags.DEFINE_list("resolutions", ["48", "56", "64"], "Input sizes of the space.")
flags.DEFINE_list("widths", ["0.35", "0.5", "0.75", "1.0"], "Width multipliers of the space.")
flags.DEFINE_list("emo_variants", ["1M", "2M"], "EMO sizes of the space.")
flags.DEFINE_integer("trials", 20, "Candidates within the budget to train.")
flags.DEFINE_integer("epochs", 3, "Short-training epochs per candidate.")
flags.DEFINE_integer("train_steps", 0, "At most this many training steps per candidate (0: all).")
flags.DEFINE_string("dataset", "keras_mobile_shapes_hard", "tfds dataset of the candidates.")
flags.DEFINE_string("data_dir", None, "tfds data dir.")
flags.DEFINE_string("workdir", "runs/search", "The study's journal, runs and report.")
flags.DEFINE_string("cache_dir", None, "Latency tables (default: ~/.cache/keras_mobile/latency).")
flags.DEFINE_integer("n_models", 80, "Random networks the latency model is fitted on.")
flags.DEFINE_integer("n_holdout", 40, "Held-out networks it is checked on.")
flags.DEFINE_integer("top_k", 3, "Most accurate candidates re-measured on the device.")
flags.DEFINE_integer("seed", 0, "Sampler and training seed.")


def _space():
    from keras_mobile.search import Space

    try:
        return Space(**({"families": tuple(FLAGS.families)} if FLAGS.families else {}),
                     resolutions=tuple(int(r) for r in FLAGS.resolutions),
                     widths=tuple(float(w) for w in FLAGS.widths),
                     emo_variants=tuple(FLAGS.emo_variants))
    except ValueError as error:  # int("x") too
        fail(str(error))


def main(argv):
    del argv
    import os

    from keras_mobile import search
    from keras_mobile.search import report

    if FLAGS.budget_ms is None:
        fail("--budget_ms is required (the latency budget in ms per image).")
    space = _space()
    try:
        device = search.Device(FLAGS.device, threads=FLAGS.threads, mode=FLAGS.mode)
        device.check()
        search.check_budget(space, device, FLAGS.budget_ms, FLAGS.cache_dir)
        latency = search.LatencyModel.fit(space, device, n_models=FLAGS.n_models,
                                          n_holdout=FLAGS.n_holdout, seed=FLAGS.seed,
                                          cache_dir=FLAGS.cache_dir, progress=print)
        os.makedirs(FLAGS.workdir, exist_ok=True)
        latency.save(os.path.join(FLAGS.workdir, "latency.json"))
        print(latency.validate())
        result = search.find(space, device, FLAGS.budget_ms, dataset=FLAGS.dataset,
                             trials=FLAGS.trials, epochs=FLAGS.epochs,
                             train_steps=FLAGS.train_steps, latency=latency,
                             workdir=FLAGS.workdir, data_dir=FLAGS.data_dir, seed=FLAGS.seed,
                             top_k=FLAGS.top_k, cache_dir=FLAGS.cache_dir)
    except ValueError as error:
        fail(str(error))
    path = report.write_search(result, latency, os.path.join(FLAGS.workdir, "report.md"))
    best = result.best
    print(f"best: {best.arch.name if best else 'none within the budget on the device'}"
          + (f" accuracy {best.accuracy:.4f}, measured {best.measured_ms:.3f} ms "
             f"(predicted {best.predicted_ms:.3f})" if best else ""))
    print(f"wrote {path}")


def run():
    run_main(main)


if __name__ == "__main__":
    run()
