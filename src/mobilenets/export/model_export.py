"""``export_model``: a checkpoint, a weights file or a registry name to ONNX, an ExecuTorch
program or OpenVINO IR, in one call."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mobilenets.errors import ConfigError, display
from mobilenets.export.choices import FORMATS
from mobilenets.export.edge import export_openvino, export_pte, network_record
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
    format: str | None = None,
) -> Path:
    """Export a training checkpoint, a ``.safetensors`` weights file, published weights by name
    (``torchvision:mobilenet_v2.IMAGENET1K_V1``; all with their record) or a registry name
    (random weights, for latency work) to ``format``: ``onnx``, ``pte`` (ExecuTorch, XNNPACK,
    fp32; int8 is ``quantize``'s) or ``openvino`` (also from one of our ``.onnx`` files, e.g.
    ``quantize``'s int8 model). ``format`` defaults to the one ``out``'s suffix names
    (``.onnx``, ``.pte``, ``.xml``)."""
    if format is not None and format in FORMATS.values():
        suffix = next(s for s, f in FORMATS.items() if f == format)
        check_output_path(out, source, suffixes=(suffix,))  # --format pte --out m.onnx: refused
    format = format or FORMATS.get(Path(out).suffix)
    if format == "openvino" and Path(source).suffix == ".onnx":
        check_output_path(out, source, suffixes=(".xml",))
        return export_openvino(source, out)
    model, info = source_network(source, out)  # its errors first: a bad source or --out
    if format not in FORMATS.values():
        raise ConfigError(
            f"--format must be one of {tuple(FORMATS.values())} (or --out ending in "
            f"{', '.join(FORMATS)}), got {display(format or Path(out).suffix or str(out))}"
        )
    if getattr(model, "task", "") == "detection":  # the network; decoding and NMS run after it
        from mobilenets.models.detection import DetectorGraph

        model = DetectorGraph(model)
    model = fold_bn(model) if fold else model.eval()
    if format == "pte":
        record = network_record(model, info, resolution)
        return export_pte(model, out, record, extra={"bn_folded": fold})
    if format == "openvino":
        with tempfile.TemporaryDirectory() as folder:
            onnx_file = export_onnx(
                model,
                Path(folder) / "model.onnx",
                resolution,
                info=info,
                metadata={"bn_folded": fold},
            )
            return export_openvino(onnx_file, out, check=model)
    return export_onnx(
        model,
        out,
        resolution,
        info=info,
        dynamic_batch=dynamic_batch,
        metadata={"bn_folded": fold},
        exporter=exporter,
    )


def source_network(source: str, out: str | Path) -> tuple:
    """The network (and record, ``None`` for a bare registry name) to export."""
    if is_name(source):
        check_output_path(out)
        return load(source)
    path = Path(source)
    check_output_path(out, source if path.exists() else None)
    if path.suffix == ".onnx":
        raise ConfigError(
            f"{display(source)} is already an ONNX model (it converts to --format openvino)"
        )
    if path.exists() or path.suffix in (".pt", ".pth", ".safetensors"):
        return load(path)
    if source in list_models():
        return create_model(source), None
    raise ConfigError(
        f"{display(source)} is neither a checkpoint, a .safetensors file, a weights name "
        f"(torchvision:mobilenet_v2.IMAGENET1K_V1) nor a model name; model names: "
        f"{', '.join(list_models())}"
    )
