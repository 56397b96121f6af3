"""A tiny training run in its own process, for the tf.distribute tests:

    python tests/train_worker.py <data_dir> <model_dir> <strategy> <cpu_devices> <weights.npz>

TF_CONFIG (multi_worker) comes from the environment. Every process saves its
final weights to ``<weights.npz>`` so the test can compare workers.
"""

import sys

import numpy as np

from keras_mobile import training
from keras_mobile.training import distribute, engine

# Global batch 8 over 4 steps; synchronized BN; no augmentation randomness differs by worker.
RECIPE = training.MAIN_JOB.replace(batch_size=8, reference_batch_size=8, epochs=1,
                                   warmup_epochs=0, learning_rate=1e-3, optimizer="sgd")
CONFIG = dict(model="MobileNetV2", model_kwargs={"alpha": 0.35}, image_size=32,
              train_split="train[:32]", eval_split="validation[:16]", verbose=0, seed=3)


def _always_synchronized(model, momentum, synchronized):  # noqa: ARG001
    _configure_batchnorm(model, momentum, synchronized=True)


def main(data_dir, model_dir, strategy, cpu_devices, out):
    distribute.configure_cpu_devices(int(cpu_devices))
    # Synchronized BN computes the variance as E[x^2] - E[x]^2, the default as
    # E[(x - mean)^2]; after BN the stem's gradients are large enough that the two
    # formulas differ by ~1e-2 after a step. The single-process reference uses
    # the distributed formula, so the comparison isolates the distribution itself.
    engine._configure_batchnorm = _always_synchronized
    result = training.train(training.TrainConfig(recipe=RECIPE, model_dir=model_dir,
                                                 data_dir=data_dir, strategy=strategy, **CONFIG))
    import keras

    import keras_mobile

    keras.utils.set_random_seed(CONFIG["seed"])  # the engine's initialization: update size
    init = keras_mobile.get_model(CONFIG["model"], weights=None, classes=10,
                                  input_shape=(32, 32, 3), classifier_activation=None,
                                  **CONFIG["model_kwargs"])
    np.savez(out, *[np.asarray(w) for w in result.model.get_weights()], steps=result.steps,
             update=np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(
                 result.model.get_weights(), init.get_weights(), strict=True))))


_configure_batchnorm = engine._configure_batchnorm

if __name__ == "__main__":
    main(*sys.argv[1:])
