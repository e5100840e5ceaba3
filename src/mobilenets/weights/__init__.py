"""Weights: torchvision and timm checkpoints in, safetensors with metadata out.

``convert_file`` is what ``mobilenets convert`` runs; ``mobilenets.load`` (or
``mobilenets.create_model(name, weights=FILE)``) reads the result back.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mobilenets.errors import ConfigError
from mobilenets.fileio import check_output_path
from mobilenets.saved.info import NetworkInfo
from mobilenets.saved.loader import load
from mobilenets.saved.safetensors import load_weights, read_weights, save_weights
from mobilenets.weights.convert import (
    SOURCES,
    Target,
    classifier_outputs,
    convert_state_dict,
    key_map,
    read_state_dict,
    timm_target,
    torchvision_target,
)

__all__ = [
    "SOURCES",
    "Target",
    "convert_file",
    "convert_state_dict",
    "imagenet_classes",
    "key_map",
    "load_weights",
    "read_state_dict",
    "read_weights",
    "save_weights",
    "timm_target",
    "torchvision_target",
]


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet class names (shipped with torchvision, no download)."""
    from torchvision.models import MobileNet_V2_Weights

    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def torchvision_eval_resize(name: str, path: str | Path) -> int | None:
    """The eval resize torchvision publishes for one of its weights files, recognised by the
    file name (232 for ``mobilenet_v2-7ebf99e0.pth``, ``IMAGENET1K_V2``), else ``None``."""
    from torchvision.models import get_model_weights

    try:
        entries = list(get_model_weights(name))
    except ValueError:
        return None
    for entry in entries:
        if Path(entry.url).name == Path(path).name:
            return int(entry.transforms().resize_size[0])
    return None


def convert_file(
    source: str,
    path: str | Path,
    out: str | Path,
    *,
    model: str,
    width_mult: float = 1.0,
    reduced_tail: bool = False,
    eval_resize: int | None = None,
) -> NetworkInfo:
    """Convert a downloaded state dict (``source`` = torchvision, timm) or one of our training
    checkpoints (``source`` = checkpoint) into a mobilenets safetensors file at ``out``.

    ``model`` is torchvision's builder name (with ``width_mult``), timm's model name, or ignored
    for a checkpoint. ``eval_resize`` is the short side before the center crop that the weights
    are evaluated with (default: torchvision's own figure when the file name is one of its
    weights files, else ``input_size / 0.875``).
    """
    check_output_path(out, path)
    if source == "checkpoint":
        net, info = load(path)
        if Path(path).suffix == ".onnx":
            raise ConfigError(f"{path} is an ONNX model; --from checkpoint takes a checkpoint.pt")
        info = replace(info, resize=eval_resize or info.resize)
        save_weights(net, out, info)
        return info
    if source not in SOURCES:
        raise ConfigError(f"--from must be one of {(*SOURCES, 'checkpoint')}, got {source!r}")
    state = read_state_dict(path)
    if source == "torchvision":
        torchvision_target(model)  # checks the name first
        num_classes = classifier_outputs(state, source, model)
        target = torchvision_target(model, width_mult, num_classes, reduced_tail)
        eval_resize = eval_resize or torchvision_eval_resize(model, path)
    else:
        target = timm_target(model)  # checks the name before the state dict is read for it
        num_classes = classifier_outputs(state, source, target.model)
        target = timm_target(model, num_classes)
    net = convert_state_dict(state, target, source)
    classes = imagenet_classes() if num_classes == 1000 else [str(i) for i in range(num_classes)]
    info = NetworkInfo(
        target.model,
        target.kwargs,
        resize=eval_resize,
        classes=tuple(classes),
        source=f"{source}:{model} ({Path(path).name})",
    )
    save_weights(net, out, info)
    return info
