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
from keras_mobile.training.recipes import MAIN_JOB, RECIPES, Recipe, recipe_for

__all__ = ["MAIN_JOB", "RECIPES", "STRATEGIES", "Classification", "Recipe", "StrategyError",
           "Task", "TrainConfig", "TrainResult", "TrainingError", "make_strategy", "recipe_for",
           "train"]
