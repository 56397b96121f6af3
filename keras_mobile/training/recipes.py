"""The papers' training recipes as data, one per family; flags override fields.

Learning rates are given at ``reference_batch_size`` and scaled linearly with the
global batch size (``Recipe.scaled_learning_rate``).
"""

from __future__ import annotations

import dataclasses
import fnmatch


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Every hyper-parameter of a training run that is not the model or the data."""

    source: str  # where the numbers come from
    optimizer: str = "adamw"  # adamw | sgd | rmsprop
    learning_rate: float = 1e-3  # at reference_batch_size
    reference_batch_size: int = 256
    batch_size: int = 256  # global batch size
    epochs: int = 100
    warmup_epochs: float = 0.0
    schedule: str = "cosine"  # cosine | exponential | poly
    min_learning_rate: float = 0.0  # cosine / poly floor
    poly_power: float = 0.9  # poly: (1 - progress) ** poly_power (mmseg's, torchvision's)
    decay_rate: float = 0.97  # exponential: multiply by this ...
    decay_epochs: float = 2.4  # ... every this many epochs
    weight_decay: float = 0.0  # decoupled (Keras' weight_decay), not on biases/norms
    momentum: float = 0.9  # sgd / rmsprop
    rmsprop_epsilon: float = 1e-3  # TF-style RMSprop epsilon (timm's rmsproptf)
    label_smoothing: float = 0.1
    randaugment: str = "none"  # timm syntax, e.g. rand-m9-mstd0.5-inc1
    drop_path_rate: float | None = None  # None: the builder's default
    dropout: float | None = None  # None: the builder's default
    bn_momentum: float | None = None  # Keras convention (PyTorch 0.1 = 0.9); None: the builder's
    ema_decay: float = 0.0  # 0: no EMA of the weights
    clip_norm: float = 0.0  # 0: no gradient clipping (global norm)
    # Quantization-aware fine-tune of the trained float model (--qat).
    qat_epochs: int = 3
    qat_learning_rate: float | None = None  # at reference_batch_size; None: learning_rate / 10

    def scaled_learning_rate(self, batch_size: int | None = None) -> float:
        return self.learning_rate * (batch_size or self.batch_size) / self.reference_batch_size

    def qat(self) -> Recipe:
        """The recipe of the QAT fine-tune: ``qat_epochs`` of cosine decay from
        ``qat_learning_rate`` to 0, no warm-up, no EMA (the float weights are trained)."""
        lr = self.learning_rate / 10 if self.qat_learning_rate is None else self.qat_learning_rate
        return self.replace(source=f"QAT fine-tune of: {self.source}", epochs=self.qat_epochs,
                            learning_rate=lr, warmup_epochs=0.0, schedule="cosine",
                            min_learning_rate=0.0, ema_decay=0.0)

    def replace(self, **overrides) -> Recipe:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"Unknown recipe fields: {sorted(unknown)}")
        return dataclasses.replace(self, **overrides)


# (model-name pattern, recipe), first match wins.
RECIPES: tuple[tuple[str, Recipe], ...] = (
    ("EMO*", Recipe(
        source="EMO (ICCV 2023) released logs, shared/specs/emo.md section 11",
        optimizer="adamw", learning_rate=6e-3, reference_batch_size=2048, batch_size=2048,
        epochs=300, warmup_epochs=20, schedule="cosine", min_learning_rate=1e-6,
        weight_decay=0.05, label_smoothing=0.1, randaugment="rand-m9-mstd0.5-inc1",
        ema_decay=0.9998, clip_norm=5.0)),
    ("EfficientNetB0Sandglass", Recipe(
        source="MobileNeXt paper / shared/specs/mobilenext.md (EfficientNet-b0 sandglass)",
        optimizer="rmsprop", learning_rate=0.12, reference_batch_size=1024, batch_size=1024,
        epochs=500, warmup_epochs=3, schedule="exponential", decay_rate=0.97, decay_epochs=2.4,
        weight_decay=1e-5, label_smoothing=0.1, ema_decay=0.9999)),
    ("MobileNeXt", Recipe(
        source="MobileNeXt official args.yaml (74_02_full_id_tensor), shared/specs/mobilenext.md",
        optimizer="sgd", learning_rate=0.1, reference_batch_size=512, batch_size=512,
        epochs=210, warmup_epochs=3, schedule="cosine", min_learning_rate=1e-5,
        weight_decay=1e-4, label_smoothing=0.1)),
    ("EfficientNet*", Recipe(
        source="EfficientNet paper (RMSProp 0.9/0.9, lr 0.256 at 4096, 0.97 every 2.4 epochs)",
        optimizer="rmsprop", learning_rate=0.256, reference_batch_size=4096, batch_size=4096,
        epochs=350, warmup_epochs=5, schedule="exponential", decay_rate=0.97, decay_epochs=2.4,
        weight_decay=1e-5, label_smoothing=0.1, randaugment="rand-m9-mstd0.5-inc1",
        ema_decay=0.9999)),
    ("MobileNetV3*", Recipe(
        source="MobileNetV3 paper (RMSProp momentum 0.9, lr 0.1 at 4096, 0.99 every 3 epochs)",
        optimizer="rmsprop", learning_rate=0.1, reference_batch_size=4096, batch_size=4096,
        epochs=350, warmup_epochs=5, schedule="exponential", decay_rate=0.99, decay_epochs=3,
        weight_decay=1e-5, label_smoothing=0.1, ema_decay=0.9999)),
    ("MobileNetV2", Recipe(
        source="MobileNetV2 paper (RMSProp 0.9/0.9, lr 0.045, 0.98 per epoch, wd 4e-5)",
        optimizer="rmsprop", learning_rate=0.045, reference_batch_size=1536, batch_size=1536,
        epochs=300, schedule="exponential", decay_rate=0.98, decay_epochs=1,
        weight_decay=4e-5, label_smoothing=0.1)),
    ("MobileNet", Recipe(
        source="MobileNet paper / TF-slim (RMSProp 0.9/0.9, lr 0.045, 0.94 every 2 epochs)",
        optimizer="rmsprop", learning_rate=0.045, reference_batch_size=1536, batch_size=1536,
        epochs=300, schedule="exponential", decay_rate=0.94, decay_epochs=2,
        weight_decay=4e-5, label_smoothing=0.1)),
)

# The main job: a short run on the embedded shapes dataset (minutes on 2 CPU cores).
MAIN_JOB = Recipe(
    source="keras_mobile main job on keras_mobile_shapes",
    optimizer="adamw", learning_rate=5e-3, reference_batch_size=64, batch_size=64,
    epochs=20, warmup_epochs=1, schedule="cosine", min_learning_rate=1e-5,
    weight_decay=0.05, label_smoothing=0.1, randaugment="none", bn_momentum=0.9, ema_decay=0.0,
    clip_norm=5.0)


# Detectors (shared/specs/dense.md section 1), by detector name.
DETECTION_RECIPES: dict[str, Recipe] = {
    "SSDLite": Recipe(
        source="EMO ssdlite_emo_*_pretrain_coco.py (AdamW lr 1.2e-3, cosine, 24 images/GPU x 8, "
               "120 epochs of RepeatDataset x5 = 600 passes; weight decay not in the config "
               "excerpt: EMO's 0.05)",
        optimizer="adamw", learning_rate=1.2e-3, reference_batch_size=192, batch_size=192,
        epochs=600, warmup_epochs=1, schedule="cosine", weight_decay=0.05, label_smoothing=0.0,
        randaugment="none"),
    "RetinaNet": Recipe(
        source="EMO retinanet_emo_*_fpn_1x_coco.py (AdamW lr 2e-4, 1x schedule: 12 epochs, "
               "2 images/GPU x 8; mmdet's steps at epochs 8 and 11 as a cosine here)",
        optimizer="adamw", learning_rate=2e-4, reference_batch_size=16, batch_size=16,
        epochs=12, warmup_epochs=0.1, schedule="cosine", weight_decay=0.05, label_smoothing=0.0,
        randaugment="none"),
}

# The detection main job: SSDLite on the embedded detection dataset (minutes on 2 cores).
DETECTION_MAIN_JOB = Recipe(
    source="keras_mobile detection main job on keras_mobile_shapes_detection",
    optimizer="adamw", learning_rate=6e-3, reference_batch_size=16, batch_size=16,
    epochs=3, warmup_epochs=0.3, schedule="cosine", min_learning_rate=1e-5, weight_decay=0.0,
    label_smoothing=0.0, randaugment="none", bn_momentum=0.9, clip_norm=5.0, qat_epochs=1,
    qat_learning_rate=5e-4)


SEGMENTATION_RECIPES: dict[str, Recipe] = {
    "DeepLabV3": Recipe(
        source="EMO deeplabv3_emo_*_512x512_80k_ade20k.py (AdamW lr 1.2e-4, weight decay 0.01, "
               "poly 0.9 to 0, 4 images/GPU on mmseg's 8 GPUs, 80k iterations = 127 epochs "
               "of ADE20K's 20,210 images)",
        optimizer="adamw", learning_rate=1.2e-4, reference_batch_size=32, batch_size=32,
        epochs=127, schedule="poly", weight_decay=0.01, label_smoothing=0.0,
        randaugment="none"),
    "PSPNet": Recipe(
        source="EMO pspnet_emo_*_512x512_80k_ade20k.py (as DeepLabV3's: AdamW lr 1.2e-4, "
               "weight decay 0.01, poly 0.9, batch 32, 80k iterations)",
        optimizer="adamw", learning_rate=1.2e-4, reference_batch_size=32, batch_size=32,
        epochs=127, schedule="poly", weight_decay=0.01, label_smoothing=0.0,
        randaugment="none"),
    "LRASPP": Recipe(
        source="torchvision references/segmentation lraspp_mobilenet_v3_large (SGD lr 0.01, "
               "momentum 0.9, weight decay 1e-6, poly 0.9, 4 images/GPU x 8, 30 epochs)",
        optimizer="sgd", learning_rate=0.01, reference_batch_size=32, batch_size=32,
        epochs=30, schedule="poly", weight_decay=1e-6, label_smoothing=0.0,
        randaugment="none"),
}

SEGMENTATION_MAIN_JOB = Recipe(
    source="keras_mobile segmentation main job on keras_mobile_shapes_detection's masks",
    optimizer="adamw", learning_rate=8e-3, reference_batch_size=16, batch_size=16,
    epochs=8, warmup_epochs=0.2, schedule="poly", weight_decay=0.0, label_smoothing=0.0,
    randaugment="none", bn_momentum=0.9, clip_norm=5.0, qat_epochs=1,
    qat_learning_rate=8e-4)


def _head_recipe(table: dict[str, Recipe], arg: str, name: str) -> Recipe:
    if name not in table:
        raise ValueError(f"{arg} must be one of {list(table)}. Received: {arg}={name!r}.")
    return table[name]


def segmentation_recipe_for(segmenter: str) -> Recipe:
    """The published training recipe of ``segmenter`` ("DeepLabV3", "PSPNet", "LRASPP")."""
    return _head_recipe(SEGMENTATION_RECIPES, "segmenter", segmenter)


def detection_recipe_for(detector: str) -> Recipe:
    """The published training recipe of ``detector`` ("SSDLite" or "RetinaNet")."""
    return _head_recipe(DETECTION_RECIPES, "detector", detector)


def recipe_for(model_name: str) -> Recipe:
    """The published recipe of the family ``model_name`` belongs to."""
    for pattern, recipe in RECIPES:
        if fnmatch.fnmatchcase(model_name, pattern):
            return recipe
    raise ValueError(f"No training recipe for model {model_name!r}.")
