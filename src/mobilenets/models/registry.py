"""One registry for every variant: ``create_model(name, **kwargs)`` and ``list_models()``.

Builders are keyword-only functions with explicit, typed parameters; a misspelt keyword is an
error naming the close matches, never silently ignored.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from mobilenets.errors import ConfigError, ConfigTypeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelEntry:
    """A registered variant: its builder and the defaults a user needs to feed it."""

    name: str
    builder: Callable[..., nn.Module]
    paper: str
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(*, paper: str, input_size: int = 224) -> Callable:
    """Decorator that registers a builder under its function name."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(name, builder, paper, input_size)
        return builder

    return wrap


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted, optionally filtered by a shell-style ``pattern``."""
    names = sorted(_REGISTRY)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; an unknown name raises ``ValueError`` with close matches."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(
            f"unknown model {name!r}.{hint} Available: {', '.join(list_models())}"
        ) from None


def model_arguments(name: str) -> dict[str, inspect.Parameter]:
    """The keyword arguments the builder of ``name`` accepts."""
    return dict(inspect.signature(get_model_entry(name).builder).parameters)


def create_model(name: str, *, weights: str | None = None, **kwargs: object) -> nn.Module:
    """Build the registered variant ``name`` with the builder's keyword arguments.

    Example: ``create_model("mobilenet_v1", width_mult=0.5, num_classes=10)``.
    ``weights`` is a mobilenets safetensors file (``mobilenets convert`` writes them): the
    network is rebuilt from the file's keywords, updated with ``kwargs``; a different
    ``num_classes`` drops only the classifier. The model remembers how it was built in
    ``model.model_name`` and ``model.model_kwargs``.
    """
    entry = get_model_entry(name)
    allowed = model_arguments(name)
    for key in kwargs:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigTypeError(
                f"{name} got an unexpected keyword argument {key!r}.{hint} "
                f"Allowed: {', '.join(allowed)}"
            )
    if weights is not None:
        from mobilenets.weights.io import load_weights

        return load_weights(
            weights, kwargs.get("num_classes"), expect_model=name, expect_kwargs=kwargs
        )
    model = entry.builder(**kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model
