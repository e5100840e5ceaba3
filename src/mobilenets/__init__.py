"""mobilenets: the MobileNet family (V1, V2, V3), faithful to the papers, with exact complexity.

``create_model(name, **kwargs)`` builds any variant (``weights=FILE`` loads a saved one);
``load(path)`` reads any saved network (checkpoint, safetensors, ONNX, or published weights by
name: ``torchvision:mobilenet_v2.IMAGENET1K_V1``) with its :class:`NetworkInfo`;
``predict(path, images)`` classifies image files with it.
"""

from mobilenets.complexity import profile
from mobilenets.models import list_models
from mobilenets.saved import NetworkInfo, create_model, get_model
from mobilenets.weights import load, predict

__version__ = "0.1.0"

__all__ = [
    "NetworkInfo",
    "__version__",
    "create_model",
    "get_model",
    "list_models",
    "load",
    "predict",
    "profile",
]
