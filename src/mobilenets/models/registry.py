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
import math
from dataclasses import dataclass, field
from types import MappingProxyType

import torch
from torch import nn

from mobilenets.errors import ConfigError, ConfigTypeError, display

#: The most parameters a network may have (4 GiB of fp32 weights); a larger request (a huge
#: ``num_classes`` or table, from a flag, a keyword or a file's record) is refused before any
#: tensor is made.
MAX_PARAMETERS = 2**30
#: Bounds of the keywords every family takes, checked before anything is built:
#: name -> (smallest, largest, integer?, what to say)
BOUNDS = {
    "num_classes": (0, 1_000_000, True, "an integer in [0, 1000000] (0: pooled features)"),
    "in_chans": (1, 1024, True, "an integer in [1, 1024]"),
    "width_mult": (0.0, 16.0, False, "a finite number > 0 and ≤ 16 (the papers use 0.25–1.4)"),
    "bn_eps": (0.0, 1.0, False, "a finite number in (0, 1] (1e-5 in PyTorch, 1e-3 in TF)"),
    "dropout": (0.0, 1.0, False, "a number in [0, 1)"),
}
#: Keywords within these bounds cannot reach MAX_PARAMETERS; beyond them (or with a table) the
#: network is first built on the meta device (no memory) and counted.
_ORDINARY = {"num_classes": 100_000, "in_chans": 64, "width_mult": 4.0}


@dataclass(frozen=True)
class ModelEntry:
    """A registered variant: its class, the keywords the variant fixes, its paper table, and
    the task it does (:data:`TASKS`)."""

    name: str
    cls: type[nn.Module]
    paper: str
    preset: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    input_size: int = 224
    task: str = "classification"


_REGISTRY: dict[str, ModelEntry] = {}
#: What a network does; the training loop, the metrics and ``predict`` follow it.
TASKS = ("classification", "segmentation", "detection")


def register_model(
    name: str,
    cls: type[nn.Module],
    *,
    paper: str,
    preset: dict | None = None,
    input_size: int = 224,
    task: str = "classification",
) -> ModelEntry:
    """Register ``cls`` (with its keywords ``preset`` fixed) under ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    preset = MappingProxyType(dict(preset or {}))
    entry = ModelEntry(name, cls, paper, preset, input_size, task)
    _REGISTRY[name] = entry
    return entry


def list_models(pattern: str | None = None, task: str | None = None) -> list[str]:
    """Registered names, sorted, optionally filtered by a shell-style ``pattern`` and by
    ``task`` (``"classification"``, ``"segmentation"``; torchvision filters by module)."""
    if task is not None and task not in TASKS:
        raise ConfigError(f"task must be one of {TASKS}, got {task!r}")
    names = sorted(n for n, e in _REGISTRY.items() if task is None or e.task == task)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def model_task(name: str) -> str:
    """The task the registered variant ``name`` does."""
    return get_model_entry(name).task


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


def check_bounds(name: str, kwargs: dict[str, object]) -> None:
    """Every sizing keyword within :data:`BOUNDS`, and the network within
    :data:`MAX_PARAMETERS`, before a tensor is made."""
    for key, (low, high, integer, allowed) in BOUNDS.items():
        if key not in kwargs:
            continue
        value = kwargs[key]
        kind = int if integer else int | float
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ConfigTypeError(
                f"{name}: {key} must be a number, {allowed}; got {display(repr(value))[:80]}"
            )
        label = "width_mult (α)" if key == "width_mult" else key
        if not math.isfinite(value):
            raise ConfigError(f"{name}: {label} must be {allowed}, got {value!r}")
        open_low = key in ("width_mult", "bn_eps")
        open_high = key == "dropout"
        if (
            value < low
            or (open_low and value == low)
            or value > high
            or (open_high and value == high)
        ):
            raise ConfigError(f"{name}: {label} must be {allowed}, got {value!r}")
    ordinary = kwargs.get("table") is None and all(
        kwargs.get(key, 0) <= limit for key, limit in _ORDINARY.items()
    )
    if ordinary:
        return
    entry = get_model_entry(name)
    with torch.device("meta"):
        probe = entry.cls(**entry.preset, **kwargs)
    count = sum(p.numel() for p in probe.parameters())
    if count > MAX_PARAMETERS:
        raise ConfigError(
            f"{name} with these settings would have {count:,} parameters "
            f"({count * 4 / 2**30:.1f} GiB of weights); at most {MAX_PARAMETERS:,} are allowed"
        )


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build the registered variant ``name`` with the class's keyword arguments.

    Example: ``create_model("mobilenet_v1", width_mult=0.5, num_classes=10)``. The model
    remembers how it was built in ``model.model_name`` and ``model.model_kwargs``. (Weights:
    ``mobilenets.create_model(name, weights=FILE)``.)
    """
    entry = get_model_entry(name)
    check_arguments(name, kwargs)
    check_bounds(name, kwargs)
    model = entry.cls(**entry.preset, **kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    if hasattr(model, "pretrained_cfg"):  # timm's record of how to feed the network
        size = (getattr(model, "in_chans", 3), entry.input_size, entry.input_size)
        model.pretrained_cfg = {**model.pretrained_cfg, "architecture": name, "input_size": size}
    return model


#: torchvision's name for the same call (``torchvision.models.get_model``).
get_model = create_model
