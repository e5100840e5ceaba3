"""One loader for every form of a saved network file.

``load_file(path)`` takes a training checkpoint (``.pt``), a weights file (``.safetensors``) or an
exported model (``.onnx``, ExecuTorch's ``.pte``, OpenVINO's ``.xml``) and returns ``(network,
info)``: an ``nn.Module`` in eval mode (exported models run in ONNX Runtime, ExecuTorch or
OpenVINO behind the same call) and its :class:`NetworkInfo`. The public ``load``,
``create_model`` and ``predict`` (:mod:`mobilenets.weights`, also published weights by name)
start here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mobilenets.data import parse_spec
from mobilenets.errors import CheckpointError, display
from mobilenets.fileio import nonfinite_tensors
from mobilenets.saved.checkpoint import load_checkpoint
from mobilenets.saved.edge import OpenVinoModel, PteProgram, edge_info
from mobilenets.saved.info import NetworkInfo
from mobilenets.saved.onnx import OnnxModule, OnnxSession, onnx_info
from mobilenets.saved.safetensors import attach, load_state_dict_strictly, load_weights

__all__ = ["checkpoint_info", "exported_info", "load_file"]


def load_file(path: str | Path, *, num_classes: int | None = None) -> tuple[nn.Module, NetworkInfo]:
    """The network saved at ``path`` (eval mode) and its record.

    ``num_classes`` different from a weights file's replaces the classifier (every other tensor
    must load), for fine-tuning.
    """
    path = Path(path)
    if path.suffix in (".onnx", ".pte", ".xml"):
        return _load_exported(path)
    if path.suffix == ".safetensors":
        model = load_weights(path, num_classes)
        return model, model.network_info
    return _load_checkpoint(path)


def _load_exported(path: Path) -> tuple[nn.Module, NetworkInfo]:
    """An ONNX model, ExecuTorch program (XNNPACK) or OpenVINO IR; a detector's graph inside
    its pre- and post-processing (:class:`~mobilenets.models.detection.ExportedDetector`)."""
    if path.suffix == ".onnx":
        network, info = OnnxModule(OnnxSession(path)), onnx_info(path)
    else:
        network = PteProgram(path) if path.suffix == ".pte" else OpenVinoModel(path)
        info = network.info
    if info.task == "detection":
        from mobilenets.models.detection import ExportedDetector
        from mobilenets.models.registry import create_model

        network = ExportedDetector(network, create_model(info.model, **dict(info.kwargs)))
    return network.eval(), info


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
    config = state.get("config")
    if isinstance(config, dict) and config.get("qat"):
        raise CheckpointError(
            f"{display(path)} is a quantization-aware-training checkpoint: its weights are "
            f"trained for int8; write its int8 file with `mobilenets quantize {path} --out "
            "FILE.pte|FILE.onnx|FILE.xml` (the float network is the one it started from: "
            f"{display(str(config.get('weights')))})"
        )
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
