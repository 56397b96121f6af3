"""Parameters, multiply-adds and memory of a registered model, per layer.

    python scripts/profile_model.py --model=EMO1M --input_size=256 --per_layer

Installed as ``keras-mobile-profile``.
"""

from __future__ import annotations

from absl import app, flags

from keras_mobile.cli import fail

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "EMO1M", "Registered model name (keras_mobile.list_models()).")
flags.DEFINE_integer("input_size", None, "Square input size (default: the model's own).")
flags.DEFINE_integer("classes", 1000, "Number of classes of the head.")
flags.DEFINE_bool("per_layer", False, "Also print the per-layer table.")


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}.")
    import keras_mobile

    kwargs = {"weights": None, "classes": FLAGS.classes}
    if FLAGS.input_size:
        kwargs["input_shape"] = (FLAGS.input_size, FLAGS.input_size, 3)
    try:
        model = keras_mobile.get_model(FLAGS.model, **kwargs)
    except ValueError as error:
        fail(str(error))
    profile = keras_mobile.profile(model)
    print(profile)
    if FLAGS.per_layer:
        print(profile.table())


def run():
    app.run(main)


if __name__ == "__main__":
    run()
