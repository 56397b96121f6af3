"""Build, profile and run a keras_mobile model: the package's quick demo.

    python scripts/demo.py                      # EMO-1M at 224
    python scripts/demo.py --model=MobileNeXt --resolution=192
    python scripts/demo.py --list               # every registered model

Installed as the console command ``keras-mobile-demo``.
"""

from __future__ import annotations

import datetime
import os
import platform
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "EMO1M", "Registered model name (see --list).")
flags.DEFINE_integer("resolution", 224, "Square input resolution.")
flags.DEFINE_integer("num_threads", 1, "TensorFlow intra/inter-op threads for the timing.")
flags.DEFINE_integer("num_runs", 10, "Timed forward passes (batch 1).")
flags.DEFINE_integer("top", 10, "Rows of the per-layer table (most MACs first).")
flags.DEFINE_bool("list", False, "List the registered models and exit.")
flags.DEFINE_bool("smoke", False, "Tiny run for tests: 64 px, 2 timed passes.")


def main(argv):
    del argv
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    import keras_mobile  # noqa: PLC0415

    if FLAGS.list:
        print("\n".join(keras_mobile.list_models()))
        return
    try:
        keras_mobile.registry.get_entry(FLAGS.model)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.num_threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.num_threads)
    size = 64 if FLAGS.smoke else FLAGS.resolution
    runs = 2 if FLAGS.smoke else FLAGS.num_runs
    model = keras_mobile.get_model(FLAGS.model, weights=None, input_shape=(size, size, 3))
    report = keras_mobile.profile(model)
    print(report)
    print(report.table(top=FLAGS.top))

    image = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype("float32")
    forward = tf.function(lambda x: model(x, training=False))
    logits = forward(image).numpy()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        forward(image)
        times.append(time.perf_counter() - start)
    print(f"Keras forward, batch 1, {FLAGS.num_threads} thread(s): median "
          f"{1e3 * float(np.median(times)):.2f} ms over {runs} runs "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{datetime.date.today()}); output {logits.shape}, sum of probabilities "
          f"{logits.sum():.4f}")
    pyramid = keras_mobile.feature_pyramid(model, levels=keras_mobile.feature_levels(model))
    shapes = {k: tuple(v.shape[1:]) for k, v in pyramid.output.items()}
    print(f"Feature pyramid: {shapes}")
    with tempfile.TemporaryDirectory() as tmp:
        path = keras_mobile.weights.save_weights(model, os.path.join(tmp, "model.h5"))
        clone = keras_mobile.get_model(FLAGS.model, weights=path, input_shape=(size, size, 3))
        same = np.array_equal(clone(image, training=False).numpy(),
                              model(image, training=False).numpy())
        print(f"Saved and reloaded name-keyed weights: outputs identical = {same}")


def run():
    """Console entry point."""
    app.run(main)


if __name__ == "__main__":
    run()
