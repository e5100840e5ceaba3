"""mobilenets: the MobileNet family (V1, V2, V3), faithful to the papers, with exact complexity.

``create_model(name, **kwargs)`` builds any variant (``weights=FILE`` loads a saved one);
``load(path)`` reads any saved network (checkpoint, safetensors, ONNX, or published weights by
name: ``torchvision:mobilenet_v2.IMAGENET1K_V1``) with its :class:`NetworkInfo`;
``predict(path, images)`` classifies image files with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilenets.lazy import lazy_getattr

__version__ = "0.1.0"

#: The public API, imported on first use (PEP 562): ``import mobilenets`` and the command
#: line's start do not import torch until a model, a profile or a loader is asked for.
_LAZY = {
    "NetworkInfo": "mobilenets.saved",
    "create_model": "mobilenets.weights",
    "get_model": "mobilenets.weights",
    "list_models": "mobilenets.models",
    "load": "mobilenets.weights",
    "predict": "mobilenets.weights",
    "profile": "mobilenets.complexity",
}

if TYPE_CHECKING:
    from mobilenets.complexity import profile
    from mobilenets.models import list_models
    from mobilenets.saved import NetworkInfo
    from mobilenets.weights import create_model, get_model, load, predict

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

__getattr__ = lazy_getattr(__name__, _LAZY)
