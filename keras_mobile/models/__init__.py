"""Model families. Importing this package registers every public builder."""

from keras_mobile.models import (  # noqa: F401
    efficientnet,
    emo,
    mobilenet,
    mobilenet_v2,
    mobilenet_v3,
    mobilenext,
)
