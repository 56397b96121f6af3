"""How good a network is, cheaply: short training (the search's default), and two
zero-cost proxies that score an untrained network from one minibatch, which must be
validated against trained accuracy (:func:`rank_agreement`) before they are trusted.

* ``naswot`` (Mellor et al., ICML 2021): log|det K| of the Hamming-similarity kernel of
  the binary activation codes (ReLU-family layers active / not) over a minibatch:
  networks that separate the inputs better score higher.
* ``grad_norm`` (Abdelfattah et al., ICLR 2021): the L2 norm of the loss gradient at
  initialization, summed over weight tensors.
"""

from __future__ import annotations

import json
import os

import numpy as np

PROXIES = ("naswot", "grad_norm")


def train(arch, *, model_dir: str, dataset: str = "keras_mobile_shapes_hard",
          data_dir: str | None = None, epochs: int = 3, batch_size: int = 64, seed: int = 0,
          recipe=None, max_steps: int = 0, verbose: int = 0) -> float:
    """Validation accuracy of ``arch`` after ``epochs`` of the main job's recipe (AdamW,
    cosine; keras_mobile.training.recipes.MAIN_JOB) at the arch's resolution (``max_steps``:
    stop after that many steps, 0: all). Resumes from ``model_dir``'s checkpoint; a
    finished run returns its recorded accuracy."""
    from keras_mobile.training import engine  # noqa: PLC0415
    from keras_mobile.training.recipes import MAIN_JOB  # noqa: PLC0415

    done = os.path.join(model_dir, "accuracy.json")
    if os.path.exists(done):
        with open(done, encoding="utf-8") as f:
            return float(json.load(f)["val_accuracy"])

    recipe = recipe or MAIN_JOB.replace(epochs=epochs, batch_size=batch_size,
                                        warmup_epochs=min(1.0, epochs / 3))
    registry_name = {"EMO": f"EMO{arch.variant}"}.get(arch.family, arch.family)
    config = engine.TrainConfig(model=registry_name, recipe=recipe, model_dir=model_dir,
                                dataset=dataset, data_dir=data_dir, image_size=arch.resolution,
                                model_kwargs={"search_arch": arch.to_dict()}, seed=seed,
                                max_steps=max_steps, verbose=verbose)
    run = engine.prepare(config)
    task = engine.Classification(recipe.label_smoothing)
    with engine.owning(run):
        import keras  # noqa: PLC0415

        keras.utils.set_random_seed(seed)
        model = arch.build(classes=run.info.num_classes, classifier_activation=None)
        trainable = engine.build(run, model=model, task=task)
        checkpoints = engine.restore(run, trainable, task)
        result = engine.fit(run, trainable, checkpoints, task)
    accuracy = float(result.history[-1]["val_accuracy"])
    from keras_mobile.files import atomic_path  # noqa: PLC0415

    with atomic_path(done) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump({"val_accuracy": accuracy, "arch": arch.to_dict(), "epochs": recipe.epochs,
                   "steps": result.steps, "seed": seed}, f)
    return accuracy


def minibatch(dataset: str = "keras_mobile_shapes_hard", *, size: int, count: int = 64,
              data_dir: str | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` training images (resized to ``size``) and labels, for the proxies."""
    import tensorflow as tf  # noqa: PLC0415

    from keras_mobile import data as kdata  # noqa: PLC0415

    info = kdata.dataset_info(dataset, data_dir)
    ds = info.builder.as_dataset(split=info.catalogue.train_split, as_supervised=True,
                                 shuffle_files=False)
    images, labels = [], []
    for image, label in ds.shuffle(1000, seed=seed).take(count):
        images.append(tf.image.resize(tf.cast(image, tf.float32), (size, size)).numpy())
        labels.append(int(label))
    return np.stack(images), np.array(labels)


def score(arch, proxy: str, images: np.ndarray, labels: np.ndarray, *, classes: int,
          seed: int = 0) -> float:
    """The zero-cost ``proxy`` of ``arch`` at initialization (seeded)."""
    if proxy not in PROXIES:
        raise ValueError(f"proxy must be one of {PROXIES}. Received: proxy={proxy!r}")
    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    keras.utils.set_random_seed(seed)
    model = arch.build(classes=classes, classifier_activation=None)
    if proxy == "naswot":
        return _naswot(model, images)
    x = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        logits = model([x], training=True)
        loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        loss = tf.reduce_mean(loss)
    grads = tape.gradient(loss, model.trainable_weights)
    return float(sum(tf.norm(g) for g in grads if g is not None))


def _naswot(model, images: np.ndarray) -> float:
    import keras  # noqa: PLC0415

    acts = [layer.output for layer in model.layers if _is_relu_like(layer)]
    if not acts:
        raise ValueError(f"{model.name} has no ReLU-family activation for naswot.")
    probe = keras.Model(model.inputs, acts)
    outputs = probe([images], training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    codes = np.concatenate([np.asarray(o).reshape(len(images), -1) > 0 for o in outputs],
                           axis=1).astype(np.float32)
    kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T
    sign, logdet = np.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else float("-inf")


def _is_relu_like(layer) -> bool:
    name = layer.__class__.__name__
    if name == "ReLU":
        return True
    if name == "Activation":
        fn = getattr(layer.activation, "__name__", str(layer.activation))
        return fn in ("relu", "relu6", "hard_swish", "silu", "gelu", "swish")
    return False


def rank_agreement(scores, accuracies) -> dict:
    """Kendall τ and Spearman ρ between proxy scores and trained accuracies."""
    import warnings  # noqa: PLC0415

    from scipy import stats  # noqa: PLC0415

    scores, accuracies = np.asarray(scores, float), np.asarray(accuracies, float)
    keep = np.isfinite(scores)
    if keep.sum() < 3:
        return {"n": int(keep.sum()), "kendall_tau": float("nan"), "spearman_rho": float("nan")}
    with warnings.catch_warnings():  # a constant input: nan, reported as such
        warnings.simplefilter("ignore")
        return {"n": int(keep.sum()),
                "kendall_tau": float(stats.kendalltau(scores[keep], accuracies[keep]).statistic),
                "spearman_rho": float(stats.spearmanr(scores[keep],
                                                      accuracies[keep]).statistic)}


def model_dir(root: str, arch, seed: int, epochs: int) -> str:
    """The folder of one short training run: one per (arch, seed, epochs)."""
    return os.path.join(root, f"{arch.key}-e{epochs}-s{seed}")
