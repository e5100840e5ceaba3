"""ONNX export: checked, constant-folded, with the network's record as metadata.

Reading an exported model (its record, an ONNX Runtime session) is :mod:`mobilenets.saved`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from mobilenets.errors import ConfigError
from mobilenets.export.choices import EXPORTERS
from mobilenets.fileio import atomic_path
from mobilenets.saved.info import NetworkInfo
from mobilenets.saved.onnx import set_onnx_metadata

OPSET = 18
INPUT, OUTPUT = "input", "logits"


def output_names(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The names a network's outputs are exported under: a dict's keys (torchvision's
    segmentation models return ``{"out", "aux"}``), ``output_0``... for a tuple, else
    ``logits``."""
    with torch.no_grad():
        result = model(x)
    if isinstance(result, dict):
        return [str(k) for k in result]
    if isinstance(result, tuple | list):
        return [f"output_{i}" for i in range(len(result))]
    return [OUTPUT]


def export_onnx(
    model: nn.Module,
    path: str | Path,
    resolution: int | None = None,
    *,
    info: NetworkInfo | None = None,
    dynamic_batch: bool = True,
    opset: int = OPSET,
    metadata: dict[str, object] | None = None,
    exporter: str = "torchscript",
    example: torch.Tensor | None = None,
) -> Path:
    """Export ``model`` (eval mode) to ONNX and check it with ``onnx.checker``.

    The graph carries the network's record (``info``; for a bare registry model, its name and
    keywords) and ``metadata`` (e.g. ``bn_folded``). ``exporter`` is torch's TorchScript-based
    exporter (the default, with constant folding) or ``"dynamo"`` (``torch.export`` based; needs
    onnxscript); ``python benchmarks/onnx_exporters.py`` compares them. The file is written
    atomically. ``example`` is the input to trace with (default: zeros of the record's size);
    every output is exported under its name (:func:`output_names`), listed in the record as
    ``outputs``.
    """
    if exporter not in EXPORTERS:
        raise ConfigError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    import onnx

    path = Path(path)
    model = model.eval()
    name = getattr(model, "model_name", None)
    if info is None and name is not None:  # a registry model: its name, keywords, defaults
        info = NetworkInfo(name, dict(model.model_kwargs))
    if info is None:  # another network (e.g. a reference model in the benchmark)
        info_values = {"model": type(model).__name__, "input_size": resolution or 224}
    else:
        info_values = info.to_dict()
    if example is not None:
        resolution = int(example.shape[-1])
    if resolution is not None:
        info_values["input_size"] = resolution
    size = int(info_values["input_size"])
    x = (
        example[:1]
        if example is not None
        else torch.zeros(1, getattr(model, "in_chans", 3), size, size)
    )
    outputs = output_names(model, x)
    axes = {name: {0: "batch"} for name in [INPUT, *outputs]} if dynamic_batch else None
    if getattr(model, "task", "") == "segmentation":  # any image size, as in PyTorch
        axes = {
            name: {**(axes or {}).get(name, {}), 2: "height", 3: "width"}
            for name in [INPUT, *outputs]
        }
    with atomic_path(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                model,
                (x,),
                str(tmp),
                input_names=[INPUT],
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=exporter == "dynamo",
                **({"external_data": False, "verbose": False} if exporter == "dynamo" else {}),
            )
        proto = onnx.load(str(tmp))
        set_onnx_metadata(proto, {**info_values, "outputs": outputs, **(metadata or {})})
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
    return path
