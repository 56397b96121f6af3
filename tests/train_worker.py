"""A tiny training run in its own process, for the tf.distribute tests:

    python tests/train_worker.py <data_dir> <model_dir> <strategy> <cpu_devices> <weights.npz> [qat]

TF_CONFIG (multi_worker) comes from the environment. Every process saves its
final weights to ``<weights.npz>`` so the test can compare workers; with ``qat``
it then fine-tunes the tfmot QAT model 4 steps (float32) in ``<model_dir>/qat``
and saves its weights, by name, to ``<weights>_qat.npz``.

The run is in float64. In float32 this net (4 images per replica, BatchNorm over
1x1 maps) amplifies rounding: the distributed and single-process weights differed
by 3% of the 4-step update (2026-11-21), and by 1e-13 in float64. float64 lets the
test tell a wrong reduction from rounding.
"""

import dataclasses
import os
import sys

import keras
import numpy as np

import keras_mobile
from keras_mobile import training
from keras_mobile.training import distribute

# Global batch 8 over 4 steps; synchronized BN; no augmentation randomness differs by worker.
RECIPE = training.MAIN_JOB.replace(batch_size=8, reference_batch_size=8, epochs=1,
                                   warmup_epochs=0, learning_rate=1e-3, optimizer="sgd")
CONFIG = dict(model="MobileNetV2", model_kwargs={"alpha": 0.35}, image_size=32,
              train_split="train[:32]", eval_split="validation[:16]", verbose=0, seed=3)


def main(data_dir, model_dir, strategy, cpu_devices, out, qat=""):
    distribute.configure_cpu_devices(int(cpu_devices))
    keras.backend.set_floatx("float64")
    config = training.TrainConfig(recipe=RECIPE, model_dir=model_dir, data_dir=data_dir,
                                  strategy=strategy, **CONFIG)
    result = training.train(config)
    keras.utils.set_random_seed(CONFIG["seed"])  # the engine's initialization: update size
    init = keras_mobile.get_model(CONFIG["model"], weights=None, classes=10,
                                  input_shape=(32, 32, 3), classifier_activation=None,
                                  **CONFIG["model_kwargs"])
    np.savez(out, *result.weights, steps=result.steps,
             update=np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(
                 result.weights, init.get_weights(), strict=True))))
    if qat:
        keras.backend.set_floatx("float32")
        keras.config.set_dtype_policy("float32")  # the float64 policy Keras cached
        fine = training.train(
            dataclasses.replace(config, qat=True, model_dir=os.path.join(model_dir, "qat"),
                                recipe=RECIPE.replace(qat_epochs=1).qat()),
            init_weights=[w.astype("float32") for w in result.weights])
        names = [w.name for w in fine.model.weights]
        np.savez(out.replace(".npz", "_qat.npz"), steps=fine.steps,
                 **dict(zip(names, fine.weights, strict=True)))


if __name__ == "__main__":
    main(*sys.argv[1:])
