"""Training: recipes as data, one custom-loop engine for every tf.distribute strategy."""

from keras_mobile.training.distribute import STRATEGIES, StrategyError, make_strategy
from keras_mobile.training.engine import (
    Classification,
    Task,
    TrainConfig,
    TrainingError,
    TrainResult,
    train,
)
from keras_mobile.training.recipes import (
    DETECTION_MAIN_JOB,
    DETECTION_RECIPES,
    MAIN_JOB,
    RECIPES,
    SEGMENTATION_MAIN_JOB,
    SEGMENTATION_RECIPES,
    Recipe,
    detection_recipe_for,
    recipe_for,
    segmentation_recipe_for,
)

__all__ = ["DETECTION_MAIN_JOB", "DETECTION_RECIPES", "MAIN_JOB", "RECIPES", "STRATEGIES",
           "Classification", "Recipe", "StrategyError", "Task", "TrainConfig", "TrainResult",
           "TrainingError", "SEGMENTATION_MAIN_JOB", "SEGMENTATION_RECIPES", "detection_recipe_for",
           "make_strategy", "recipe_for", "segmentation_recipe_for", "train"]
