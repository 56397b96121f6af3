"""Data: the embedded shapes dataset, tensorflow-datasets access and the input pipeline."""

from keras_mobile.data.augment import RandAugment
from keras_mobile.data.datasets import (
    DATASETS,
    DatasetError,
    DatasetInfo,
    SplitError,
    check_name,
    dataset_info,
    input_pipeline,
)
from keras_mobile.data.shapes import KerasMobileShapes, KerasMobileShapesHard

__all__ = ["DATASETS", "DatasetError", "DatasetInfo", "KerasMobileShapes",
           "KerasMobileShapesHard", "RandAugment", "SplitError", "check_name", "dataset_info",
           "input_pipeline"]
