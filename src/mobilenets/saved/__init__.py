"""Saved networks: one record (:class:`NetworkInfo`) for checkpoints, safetensors and ONNX,
and one loader (:func:`load`) and prediction path (:func:`predict`) for all three."""

from mobilenets.saved.info import NetworkInfo
from mobilenets.saved.loader import Prediction, create_model, get_model, load, predict

__all__ = ["NetworkInfo", "Prediction", "create_model", "get_model", "load", "predict"]
