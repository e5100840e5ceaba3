"""One loader for every form of a saved network, and one prediction path for all of them.

``load(path)`` takes a training checkpoint (``.pt``), a weights file (``.safetensors``) or an
exported model (``.onnx``, ExecuTorch's ``.pte``, OpenVINO's ``.xml``) and returns ``(network,
info)``: an ``nn.Module`` in eval mode (exported models run in ONNX Runtime, ExecuTorch or
OpenVINO behind the same call) and its :class:`NetworkInfo`. Evaluation,
export, conversion, quantization and prediction all start here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mobilenets.data import parse_spec
from mobilenets.data.folder import load_rgb
from mobilenets.errors import BadImageError, CheckpointError, ConfigError, display
from mobilenets.fileio import nonfinite_tensors
from mobilenets.models.registry import check_arguments
from mobilenets.models.registry import create_model as build
from mobilenets.saved.checkpoint import load_checkpoint
from mobilenets.saved.edge import OpenVinoModel, PteProgram, edge_info
from mobilenets.saved.info import NetworkInfo
from mobilenets.saved.onnx import OnnxModule, OnnxSession, onnx_info
from mobilenets.saved.safetensors import attach, load_state_dict_strictly, load_weights

__all__ = ["Prediction", "checkpoint_info", "create_model", "get_model", "load", "predict"]


def load(path: str | Path, *, num_classes: int | None = None) -> tuple[nn.Module, NetworkInfo]:
    """The network saved at ``path`` (eval mode) and its record.

    ``num_classes`` different from a weights file's replaces the classifier (every other tensor
    must load), for fine-tuning.
    """
    path = Path(path)
    if path.suffix == ".onnx":
        return OnnxModule(OnnxSession(path)).eval(), onnx_info(path)
    if path.suffix in (".pte", ".xml"):  # ExecuTorch (XNNPACK) or OpenVINO (fp32)
        network = PteProgram(path) if path.suffix == ".pte" else OpenVinoModel(path)
        return network.eval(), network.info
    if path.suffix == ".safetensors":
        model = load_weights(path, num_classes)
        return model, model.network_info
    return _load_checkpoint(path)


def exported_info(path: str | Path) -> NetworkInfo:
    """The record an exported file (.onnx, .pte, OpenVINO .xml) carries, without loading the
    network into a runtime."""
    path = Path(path)
    return onnx_info(path) if path.suffix == ".onnx" else edge_info(path)


def checkpoint_info(state: dict, where: str | Path) -> NetworkInfo:
    """The record of a training checkpoint (rebuilt from its configuration for checkpoints
    written before records were stored in them)."""
    if isinstance(state.get("info"), dict):
        return NetworkInfo.from_dict(state["info"], where)
    config, classes = state.get("config"), state.get("classes")
    if not isinstance(config, dict) or not isinstance(classes, list):
        raise CheckpointError(f"{display(where)} is not a mobilenets training checkpoint")
    mean, std = parse_spec(str(config.get("data", "digits"))).mean_std
    kwargs = {"width_mult": config.get("width_mult", 1.0), **(config.get("model_kwargs") or {})}
    kwargs["num_classes"] = len(classes)
    info = {
        "model": config.get("model"),
        "kwargs": kwargs,
        "mean": mean,
        "std": std,
        "input_size": config.get("resolution"),
        "classes": classes,
        "data": str(config.get("data", "")),
    }
    return NetworkInfo.from_dict(info, where)


def _load_checkpoint(path: Path) -> tuple[nn.Module, NetworkInfo]:
    """A run's network from its checkpoint (its EMA weights when the run kept them)."""
    state = load_checkpoint(path)
    if "model" not in state:
        bare = state and all(isinstance(v, torch.Tensor) for v in state.values())
        hint = (
            ": it holds a bare state dict; convert it first with `mobilenets convert --from "
            "torchvision|timm`"
            if bare
            else ""
        )
        raise CheckpointError(f"{display(path)} is not a mobilenets training checkpoint{hint}")
    info = checkpoint_info(state, path)
    weights = state["model"]
    if state.get("ema"):
        ema = state["ema"]
        weights = {k.removeprefix("module."): v for k, v in ema.items() if k.startswith("module.")}
    bad = nonfinite_tensors(weights) if isinstance(weights, dict) else []
    if bad:
        raise CheckpointError(
            f"{display(path)} holds NaN or inf in {', '.join(bad[:3])}: refusing diverged weights"
        )
    try:
        model = info.build()
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{display(path)}: its record does not build a network: {err}"
        ) from err
    load_state_dict_strictly(model, weights, display(path))
    attach(model, info)
    return model.eval(), info


def create_model(name: str, *, weights: str | Path | None = None, **kwargs: object) -> nn.Module:
    """Build the registered variant ``name``; with ``weights`` (a mobilenets ``.safetensors``
    file) the network is the file's, and ``kwargs`` must agree with it (a different
    ``num_classes`` replaces only the classifier)."""
    if weights is None:
        return build(name, **kwargs)
    check_arguments(name, kwargs)
    return load_weights(weights, kwargs.get("num_classes"), expect_model=name, expect_kwargs=kwargs)


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
    ``.onnx`` or a loaded ``(network, info)``): one preprocessing (``info.eval_transform()``),
    one softmax and top-k for PyTorch and ONNX Runtime alike.

    An unreadable image raises :class:`BadImageError` naming it, or with ``skip_bad_images``
    gets a :class:`Prediction` with ``error`` set and no classes.
    """
    for name, value in (("topk", topk), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {display(repr(value))}")
    model, info = load(network) if not isinstance(network, tuple) else network
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
