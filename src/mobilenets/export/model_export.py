"""``export_model``: a checkpoint, a weights file or a registry name to ONNX, in one call."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from mobilenets.errors import ConfigError, display
from mobilenets.export.fold_bn import fold_bn
from mobilenets.export.onnx import export_onnx
from mobilenets.fileio import check_output_path
from mobilenets.models.registry import create_model, get_model_entry, list_models


def load_for_export(source: str) -> tuple[nn.Module, dict]:
    """The network behind ``source`` and the metadata it should carry."""
    path = Path(source)
    if path.suffix == ".safetensors":
        from mobilenets.weights import load_weights

        model = load_weights(path)
        info = model.weights_info
        return model, {
            "input_size": info.input_size,
            "mean": list(info.mean),
            "std": list(info.std),
            "classes": info.classes,
            "resize": info.resize,
        }
    if path.suffix in (".pt", ".pth") or path.exists():
        from mobilenets.data import parse_spec
        from mobilenets.training.fit import load_run

        config, model, classes = load_run(path)
        mean, std = parse_spec(config.data).mean_std
        return model, {
            "input_size": config.resolution,
            "mean": list(mean),
            "std": list(std),
            "classes": classes,
        }
    if source not in list_models():
        raise ConfigError(
            f"{display(source)} is neither a checkpoint, a .safetensors file nor a model name; "
            f"model names: {', '.join(list_models())}"
        )
    model = create_model(source)  # a registry name: random weights, for latency work
    return model, {"input_size": get_model_entry(source).input_size}


def export_model(
    source: str,
    out: str | Path,
    *,
    fold: bool = True,
    resolution: int | None = None,
    dynamic_batch: bool = True,
) -> Path:
    """Export a training checkpoint, a ``.safetensors`` weights file or a registry name."""
    check_output_path(out, source if Path(source).exists() else None)
    model, meta = load_for_export(source)
    meta["input_size"] = resolution or meta["input_size"]
    meta["bn_folded"] = fold
    return export_onnx(
        fold_bn(model) if fold else model.eval(),
        out,
        meta["input_size"],
        dynamic_batch=dynamic_batch,
        metadata=meta,
    )
