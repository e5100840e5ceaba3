"""Model families. Importing this package registers every variant."""

from mobilenets.models import (  # noqa: F401  (registers)
    detection,
    mobilenet_v1,
    mobilenet_v2,
    mobilenet_v3,
    segmentation,
)
from mobilenets.models.base import FeatureInfo, MobileNet
from mobilenets.models.mobilenet_v1 import MobileNetV1
from mobilenets.models.mobilenet_v2 import MobileNetV2
from mobilenets.models.mobilenet_v3 import MobileNetV3
from mobilenets.models.registry import (
    create_model,
    get_model,
    get_model_entry,
    list_models,
    model_task,
    register_model,
)

__all__ = [
    "FeatureInfo",
    "MobileNet",
    "MobileNetV1",
    "MobileNetV2",
    "MobileNetV3",
    "create_model",
    "get_model",
    "get_model_entry",
    "list_models",
    "model_task",
    "register_model",
]
