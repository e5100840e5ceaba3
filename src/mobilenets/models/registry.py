"""One registry for every variant: ``create_model(name, **kwargs)`` and ``list_models()``.

A variant is a model class and a preset of its keywords (``mobilenet_v1_conv`` is
``MobileNetV1`` with ``full_conv=True``), registered once; the keywords a user may pass are the
class's own, typed and documented there. A misspelt keyword is an error naming the close
matches, never silently ignored.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass, field
from types import MappingProxyType

from torch import nn

from mobilenets.errors import ConfigError, ConfigTypeError


@dataclass(frozen=True)
class ModelEntry:
    """A registered variant: its class, the keywords the variant fixes, and its paper table."""

    name: str
    cls: type[nn.Module]
    paper: str
    preset: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    input_size: int = 224


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    cls: type[nn.Module],
    *,
    paper: str,
    preset: dict | None = None,
    input_size: int = 224,
) -> ModelEntry:
    """Register ``cls`` (with its keywords ``preset`` fixed) under ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    entry = ModelEntry(name, cls, paper, MappingProxyType(dict(preset or {})), input_size)
    _REGISTRY[name] = entry
    return entry


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted, optionally filtered by a shell-style ``pattern``."""
    names = sorted(_REGISTRY)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; an unknown name is an error with close matches."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(
            f"unknown model {name!r}.{hint} Available: {', '.join(list_models())}"
        ) from None


def model_arguments(name: str) -> dict[str, inspect.Parameter]:
    """The keyword arguments variant ``name`` accepts: its class's, less those it fixes."""
    entry = get_model_entry(name)
    parameters = inspect.signature(entry.cls).parameters
    return {k: p for k, p in parameters.items() if k not in entry.preset}


def check_arguments(name: str, kwargs: dict[str, object]) -> None:
    """Every keyword must be one variant ``name`` takes: a misspelt one names the close match."""
    allowed = model_arguments(name)
    for key in kwargs:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigTypeError(
                f"{name} got an unexpected keyword argument {key!r}.{hint} "
                f"Allowed: {', '.join(allowed)}"
            )


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build the registered variant ``name`` with the class's keyword arguments.

    Example: ``create_model("mobilenet_v1", width_mult=0.5, num_classes=10)``. The model
    remembers how it was built in ``model.model_name`` and ``model.model_kwargs``. (Weights:
    ``mobilenets.create_model(name, weights=FILE)``.)
    """
    entry = get_model_entry(name)
    check_arguments(name, kwargs)
    model = entry.cls(**entry.preset, **kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    if hasattr(model, "pretrained_cfg"):  # timm's record of how to feed the network
        size = (getattr(model, "in_chans", 3), entry.input_size, entry.input_size)
        model.pretrained_cfg = {**model.pretrained_cfg, "architecture": name, "input_size": size}
    return model


#: torchvision's name for the same call (``torchvision.models.get_model``).
get_model = create_model
