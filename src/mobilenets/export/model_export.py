"""``export_model``: a checkpoint, a weights file or a registry name to ONNX, in one call."""

from __future__ import annotations

from pathlib import Path

from mobilenets.errors import ConfigError, display
from mobilenets.export.folding import fold_bn
from mobilenets.export.onnx import export_onnx
from mobilenets.fileio import check_output_path
from mobilenets.models.registry import create_model, list_models
from mobilenets.weights import is_name, load


def export_model(
    source: str,
    out: str | Path,
    *,
    fold: bool = True,
    resolution: int | None = None,
    dynamic_batch: bool = True,
    exporter: str = "torchscript",
) -> Path:
    """Export a training checkpoint, a ``.safetensors`` weights file, published weights by name
    (``torchvision:mobilenet_v2.IMAGENET1K_V1``; all with their record) or a registry name
    (random weights, for latency work) to ONNX."""
    model, info = _source_network(source, out)
    return export_onnx(
        fold_bn(model) if fold else model.eval(),
        out,
        resolution,
        info=info,
        dynamic_batch=dynamic_batch,
        metadata={"bn_folded": fold},
        exporter=exporter,
    )


def _source_network(source: str, out: str | Path) -> tuple:
    """The network (and record, ``None`` for a bare registry name) to export."""
    if is_name(source):
        check_output_path(out)
        return load(source)
    path = Path(source)
    check_output_path(out, source if path.exists() else None)
    if path.suffix == ".onnx":
        raise ConfigError(f"{display(source)} is already an ONNX model")
    if path.exists() or path.suffix in (".pt", ".pth", ".safetensors"):
        return load(path)
    if source in list_models():
        return create_model(source), None
    raise ConfigError(
        f"{display(source)} is neither a checkpoint, a .safetensors file, a weights name "
        f"(torchvision:mobilenet_v2.IMAGENET1K_V1) nor a model name; model names: "
        f"{', '.join(list_models())}"
    )
