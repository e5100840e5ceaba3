"""Weights: torchvision and timm checkpoints in, safetensors with metadata out.

``convert_file`` is what ``mobilenets convert`` runs; ``mobilenets.load`` (or
``mobilenets.create_model(name, weights=FILE)``) reads the result back. :func:`load` and
:func:`predict` here take what the saved-network loader takes and also published weights by name
(``torchvision:mobilenet_v2.IMAGENET1K_V1``, see :mod:`mobilenets.weights.hub`); every command
that reads a network goes through them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from mobilenets.catalog import WEIGHT_SOURCES as SOURCES
from mobilenets.data.folder import load_rgb
from mobilenets.errors import BadImageError, ConfigError, WeightsError, display
from mobilenets.fileio import check_output_path
from mobilenets.models.registry import check_arguments
from mobilenets.models.registry import create_model as build
from mobilenets.saved.info import NetworkInfo
from mobilenets.saved.loader import load_file
from mobilenets.saved.safetensors import load_weights, read_weights, save_weights
from mobilenets.weights.convert import (
    KERAS_WIDTHS,
    Target,
    convert_state_dict,
    convert_state_file,
    default_classes,
    imagenet_classes,
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
    "Prediction",
    "Target",
    "convert_file",
    "convert_state_dict",
    "create_model",
    "get_model",
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
    """The network saved at ``spec`` (eval mode) and its record: a checkpoint, a weights file,
    an exported ``.onnx``/``.pte``/``.xml``, or published weights by name. ``num_classes``
    different from a weights file's replaces the classifier (every other tensor must load)."""
    return load_file(resolve(spec), num_classes=num_classes)


def create_model(name: str, *, weights: str | Path | None = None, **kwargs: object) -> nn.Module:
    """Build the registered variant ``name``; with ``weights`` (a mobilenets ``.safetensors``
    file, or published weights by name) the network is the file's, and ``kwargs`` must agree
    with it (a different ``num_classes`` replaces only the classifier)."""
    if weights is None:
        return build(name, **kwargs)
    check_arguments(name, kwargs)
    return load_weights(
        resolve(weights), kwargs.get("num_classes"), expect_model=name, expect_kwargs=kwargs
    )


#: torchvision's name for the same call.
get_model = create_model


@dataclass(frozen=True)
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class name, probability), best first
    error: str | None = None  # why the image was skipped (with ``skip_bad_images``)


@torch.inference_mode()
def predict(
    network: str | Path | tuple[nn.Module, NetworkInfo],
    images: list[str | Path],
    topk: int = 5,
    batch_size: int = 16,
    *,
    skip_bad_images: bool = False,
) -> list[Prediction]:
    """Top-k classes of image files, with any saved network (``.pt``, ``.safetensors``,
    ``.onnx``, ``.pte``, ``.xml``, published weights by name, or a loaded ``(network, info)``):
    one preprocessing (``info.eval_transform()``), one softmax and top-k for every runtime.

    An unreadable image raises :class:`BadImageError` naming it, or with ``skip_bad_images``
    gets a :class:`Prediction` with ``error`` set and no classes.
    """
    for name, value in (("topk", topk), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {display(repr(value))}")
    model, info = load(network) if not isinstance(network, tuple) else network
    if info.task != "classification":
        raise ConfigError(
            f"{info.model} is a {info.task} network: it predicts masks "
            "(mobilenets predict --out FOLDER, or training.tasks.segmentation.predict_masks)"
        )
    if info.num_classes == 0:
        raise ConfigError(
            f"{display(network if not isinstance(network, tuple) else info.model)} has no "
            "classifier (num_classes=0): it outputs pooled features, not class probabilities"
        )
    transform = info.eval_transform()
    results: dict[str, Prediction] = {}
    paths = [str(p) for p in images]
    for start in range(0, len(paths), batch_size):
        chunk, tensors = [], []
        for path in paths[start : start + batch_size]:
            try:
                tensors.append(transform(load_rgb(path)))
                chunk.append(path)
            except BadImageError as err:
                if not skip_bad_images:
                    raise
                results[path] = Prediction(path, [], str(err))
        if not tensors:
            continue
        probs = model(torch.stack(tensors)).float().softmax(1)
        classes = info.classes or tuple(str(i) for i in range(probs.shape[1]))
        values, indices = probs.topk(min(topk, probs.shape[1]), dim=1)
        for path, vals, idxs in zip(chunk, values.tolist(), indices.tolist(), strict=True):
            results[path] = Prediction(
                path, [(classes[i], v) for i, v in zip(idxs, vals, strict=True)]
            )
    return [results[p] for p in paths]


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


def convert_file(
    source: str | None,
    path: str | Path,
    out: str | Path,
    *,
    model: str = "",
    width_mult: float | None = None,
    reduced_tail: bool = False,
    eval_resize: int | None = None,
    classes: tuple[str, ...] | list[str] = (),
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
    weights files, else ``input_size / 0.875``). ``source`` = tf-ssd reads a TF Object
    Detection API SSDLite-MobileNetV2 frozen graph (:mod:`.tf_ssd`), ``classes`` naming its
    foreground classes.
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
        net, info = load_file(path)
        info = replace(info, resize=eval_resize or info.resize)
        save_weights(net, out, info)
        return info
    if source not in SOURCES:
        raise ConfigError(f"--from must be one of {(*SOURCES, 'checkpoint')}, got {source!r}")
    if classes and source != "tf-ssd":
        raise ConfigError(
            "--classes names a TF detector's classes (--from tf-ssd); other sources carry their own"
        )
    if source == "tf-ssd":
        from mobilenets.weights.tf_ssd import convert_tf_ssd

        net, info = convert_tf_ssd(path, classes=classes)
        save_weights(net, out, info)
        return info
    if source == "keras":
        net, info = convert_keras(path, model=model, width_mult=width_mult)
        info = replace(info, resize=eval_resize)
        save_weights(net, out, info)
        return info
    return convert_state_file(
        source,
        path,
        out,
        model=model,
        width_mult=width_mult,
        reduced_tail=reduced_tail,
        eval_resize=eval_resize,
    )
