"""Saved networks: one record (:class:`NetworkInfo`) for checkpoints, safetensors and exported
files, and one reader (:func:`load_file`) for all of them. The public ``load``, ``predict`` and
``create_model(name, weights=...)`` are :mod:`mobilenets.weights`' (they also take published
weights by name)."""

from mobilenets.saved.info import NetworkInfo
from mobilenets.saved.loader import exported_info, load_file

__all__ = ["NetworkInfo", "exported_info", "load_file"]
