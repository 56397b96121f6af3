"""Model families. Importing this package registers every public builder."""

from keras_mobile.models import emo, mobilenet_v2  # noqa: F401
from keras_mobile.models import mobilenext  # noqa: F401
from keras_mobile.models import efficientnet, mobilenet, mobilenet_v3  # noqa: F401
