"""Weights: torchvision and timm checkpoints in, safetensors with metadata out.

``convert_file`` is what ``mobilenets convert`` runs; ``mobilenets.load`` (or
``mobilenets.create_model(name, weights=FILE)``) reads the result back. :func:`load` and
:func:`predict` here take what the saved-network loader takes and also published weights by name
(``torchvision:mobilenet_v2.IMAGENET1K_V1``, see :mod:`mobilenets.weights.hub`); every command
that reads a network goes through them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import nn

from mobilenets.catalog import WEIGHT_SOURCES as SOURCES
from mobilenets.errors import ConfigError, WeightsError, display
from mobilenets.fileio import check_output_path, file_sha256
from mobilenets.saved import loader
from mobilenets.saved.info import NetworkInfo
from mobilenets.saved.loader import Prediction
from mobilenets.saved.safetensors import load_weights, read_weights, save_weights
from mobilenets.weights.convert import (
    KERAS_WIDTHS,
    Target,
    classifier_outputs,
    convert_state_dict,
    keras_target,
    key_map,
    read_state_dict,
    timm_target,
    torchvision_target,
)
from mobilenets.weights.hub import is_name, resolve
from mobilenets.weights.keras import keras_classes, keras_family, read_keras_weights

#: Keras applications feed MobileNets x / 127.5 - 1 (x in [0, 255]): mean = std = 0.5 on [0, 1].
KERAS_MEAN = KERAS_STD = (0.5, 0.5, 0.5)

__all__ = [
    "SOURCES",
    "Target",
    "convert_file",
    "convert_state_dict",
    "imagenet_classes",
    "is_name",
    "key_map",
    "load",
    "load_weights",
    "predict",
    "read_state_dict",
    "read_weights",
    "resolve",
    "save_weights",
    "timm_target",
    "torchvision_target",
]


def load(spec: str | Path, *, num_classes: int | None = None) -> tuple[nn.Module, NetworkInfo]:
    """:func:`mobilenets.saved.load` for a saved file or published weights by name."""
    return loader.load(resolve(spec), num_classes=num_classes)


def predict(
    network: str | Path | tuple[nn.Module, NetworkInfo], images: list, **kwargs: object
) -> list[Prediction]:
    """:func:`mobilenets.saved.predict` for a saved file or published weights by name."""
    network = network if isinstance(network, tuple) else load(network)
    return loader.predict(network, images, **kwargs)


def convert_keras(
    path: str | Path, *, model: str = "", width_mult: float | None = None
) -> tuple[nn.Module, NetworkInfo]:
    """Our network with the weights of a Keras applications file (:mod:`.keras`): the family
    from the layers' names, the width from their shapes (each width Keras offers is tried
    unless ``width_mult`` is given), the input scaling Keras expects (``x / 127.5 - 1``, which
    V3 does inside the model) stored as mean = std = 0.5."""
    tensors = read_keras_weights(path)
    family, minimalistic = keras_family(tensors)
    if model and model != family:
        raise ConfigError(f"{display(path)} holds a Keras {family}, not a {model}")
    num_classes = keras_classes(tensors, family)
    errors = []
    for width in [width_mult] if width_mult else KERAS_WIDTHS[family]:
        target = keras_target(family, width, num_classes, minimalistic)
        try:
            net = convert_state_dict(tensors, target, "keras")
        except WeightsError as err:
            errors.append(f"α = {width:g}: {err}")
            continue
        classes = default_classes(num_classes)
        info = NetworkInfo(
            target.model,
            target.kwargs,
            mean=KERAS_MEAN,
            std=KERAS_STD,
            classes=tuple(classes),
            source=f"keras:{Path(path).name}",
        )
        return net, info
    tried = "the width given" if width_mult else f"any of Keras's widths {KERAS_WIDTHS[family]}"
    raise WeightsError(
        f"{display(path)} holds a Keras {family} that fits {tried}; "
        + (errors[0] if len(errors) == 1 else f"first: {errors[0]}")
    )


def default_classes(num_classes: int) -> list[str]:
    """ImageNet's class names for a 1,000-way classifier, else the indices as names."""
    return imagenet_classes() if num_classes == 1000 else [str(i) for i in range(num_classes)]


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
    source: str | None,
    path: str | Path,
    out: str | Path,
    *,
    model: str = "",
    width_mult: float | None = None,
    reduced_tail: bool = False,
    eval_resize: int | None = None,
) -> NetworkInfo:
    """Convert a downloaded state dict (``source`` = torchvision, timm), one of our training
    checkpoints (``source`` = checkpoint) or published weights by name (``path`` =
    ``torchvision:mobilenet_v2.IMAGENET1K_V1``; ``source`` and ``model`` are then unused) into
    a mobilenets safetensors file at ``out``.

    ``model`` is torchvision's builder name (with ``width_mult``, default 1), timm's model name,
    for Keras (``source`` = keras) our name of the network if it is to be checked (the family
    and, unless ``width_mult`` is given, the width are read from the file), or ignored for a
    checkpoint. ``eval_resize`` is the short side before the center crop that the weights
    are evaluated with (default: torchvision's own figure when the file name is one of its
    weights files, else ``input_size / 0.875``).
    """
    check_output_path(out, None if is_name(path) else path)
    if Path(out).suffix in (".onnx", ".pte", ".xml", ".bin", ".pt", ".pth", ".h5", ".keras"):
        raise ConfigError(
            f"--out {display(out)}: convert writes safetensors weights; name it "
            f"FILE.safetensors, not {display(Path(out).suffix)}"
        )
    if reduced_tail and (source != "torchvision" or not model.startswith("mobilenet_v3")):
        raise ConfigError(
            "--reduced-tail applies to torchvision's MobileNetV3 state dicts only (--from "
            f"torchvision --model mobilenet_v3_large|small), not {display(source or path)} "
            f"{display(model)}".rstrip()
        )
    if source == "checkpoint" and Path(path).suffix in (".onnx", ".pte", ".xml"):
        raise ConfigError(
            f"{display(path)} is an exported model; --from checkpoint takes a run's "
            "checkpoint.pt (exported files hold no trainable weights to convert back)"
        )
    if is_name(path):  # published weights by name: found, verified, converted, then copied
        net, info = load(path)
        save_weights(net, out, info)
        return info
    if source == "checkpoint":
        net, info = loader.load(path)
        info = replace(info, resize=eval_resize or info.resize)
        save_weights(net, out, info)
        return info
    if source not in SOURCES:
        raise ConfigError(f"--from must be one of {(*SOURCES, 'checkpoint')}, got {source!r}")
    if source == "keras":
        net, info = convert_keras(path, model=model, width_mult=width_mult)
        info = replace(info, resize=eval_resize)
        save_weights(net, out, info)
        return info
    state = read_state_dict(path)
    width_mult = width_mult or 1.0
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
    classes = default_classes(num_classes)
    info = NetworkInfo(
        target.model,
        target.kwargs,
        resize=eval_resize,
        classes=tuple(classes),
        source=f"{source}:{model} ({Path(path).name}, sha256 {file_sha256(path)})",
    )
    save_weights(net, out, info)
    return info
