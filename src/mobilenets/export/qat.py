"""The int8 files of a quantization-aware-trained run (``train --qat``): its checkpoint's fake
quantizers converted (:func:`~mobilenets.export.pt2e.convert_qat`), with the scales the run
trained, and written as

- an ExecuTorch program (``.pte``: the PT2E graph lowered to XNNPACK, the program a
  post-training ``.pte`` is: :mod:`mobilenets.export.pt2e`),
- a QDQ ONNX model (``.onnx``: the converted graph through torch's dynamo exporter; ONNX
  Runtime runs its QuantizeLinear/DequantizeLinear pairs with int8 kernels),
- an OpenVINO IR (``.xml``: OpenVINO's conversion of that ONNX model).

Nothing is calibrated; ``quantize`` judges the file as every int8 file
(:func:`mobilenets.export.quantize.quantize_qat`), against the fp32 network the run started from
(:func:`qat_reference`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from mobilenets.errors import CheckpointError, ConfigError, display
from mobilenets.export.pt2e import QAT_SCHEME, convert_qat, prepare_qat
from mobilenets.saved.checkpoint import load_checkpoint
from mobilenets.saved.info import NetworkInfo
from mobilenets.saved.loader import checkpoint_info
from mobilenets.saved.safetensors import load_state_dict_strictly

SUFFIXES = (".pte", ".onnx", ".xml")


def is_qat_checkpoint(source: str | Path) -> bool:
    """Whether ``source`` is the checkpoint of a ``train --qat`` run."""
    path = Path(source)
    if path.suffix not in (".pt", ".pth") or not path.is_file():
        return False
    config = load_checkpoint(path).get("config")
    return isinstance(config, dict) and bool(config.get("qat"))


def load_qat(path: str | Path) -> tuple[nn.Module, nn.Module, NetworkInfo, object]:
    """A QAT run's fake-quantized network (eval mode), the same weights as a float network,
    its record, and the weights it started from (``--weights``), from one read of the file."""
    state = load_checkpoint(path)
    info = checkpoint_info(state, path)
    if state.get("model") is None:
        raise CheckpointError(f"{display(path)} holds no network")
    float_model = info.build()
    size = info.input_size
    example = torch.randn(2, getattr(float_model, "in_chans", 3), size, size)
    prepared = prepare_qat(info.build(), example)
    try:  # torch's own loading: the quantizers' buffers take the trained shapes
        prepared.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as err:
        raise CheckpointError(
            f"{display(path)} does not fit the QAT graph of its own network: "
            f"{str(err).splitlines()[0]}"
        ) from err
    prefix = "graph." if info.task == "detection" else ""  # a detector's network: its graph
    names = float_model.state_dict()
    float_weights = {
        k.removeprefix(prefix): v
        for k, v in state["model"].items()
        if k.startswith(prefix) and k.removeprefix(prefix) in names
    }
    load_state_dict_strictly(float_model, float_weights, display(path))
    start = (state.get("config") or {}).get("weights")
    return prepared.eval(), float_model.eval(), info, start


def qat_reference(start: object, float_model: nn.Module, info: NetworkInfo) -> tuple:
    """The fp32 network a QAT run's int8 is judged against, and what it is: the trained
    network the run started from (``--weights``: what the user means to keep), when it still
    loads as the same network with the same classes; else the run's own weights in fp32. Those
    were tuned with the quantizers in place and are no fp32 network to keep: the real V2's on
    ``photos`` scored 76.9% where their int8 scored 90.4% (``benchmarks/qat.py``)."""
    from mobilenets.errors import MobilenetsError
    from mobilenets.weights import load

    try:
        model, start_info = load(start) if isinstance(start, str) else (None, None)
    except (MobilenetsError, OSError):
        model = start_info = None
    if start_info is not None and (start_info.model, start_info.classes) == (
        info.model,
        info.classes,
    ):
        return model.eval(), f"the fp32 network it started from, {display(start)}"
    return float_model, "its own weights in fp32 (the network it started from does not load)"


def write_qat(source: str | Path, staged: Path) -> tuple[nn.Module, NetworkInfo, int, str]:
    """Write ``source``'s (a QAT checkpoint's) int8 file at ``staged`` (its suffix says which
    runtime's); the fp32 network to judge it against and what that is
    (:func:`qat_reference`), its record, and the size of the run's fp32 file (a ``.pte``'s:
    :func:`~mobilenets.export.edge.fp32_program_bytes`)."""
    from mobilenets.export.edge import (
        export_openvino,
        export_pte,
        fp32_program_bytes,
        network_record,
    )
    from mobilenets.export.onnx import export_onnx

    if staged.suffix not in SUFFIXES:
        raise ConfigError(
            f"a QAT run's int8 is written as FILE.pte, FILE.onnx or FILE.xml, not {display(staged)}"
        )
    prepared, float_model, info, start = load_qat(source)
    reference, what = qat_reference(start, float_model, info)
    int8 = convert_qat(prepared)
    network = float_model
    if info.task == "detection":  # the file holds the network; decoding and NMS run after it
        from mobilenets.models.detection import DetectorGraph

        network = DetectorGraph(float_model).eval()
    record = network_record(network, info, None)
    extra = {"quantization": QAT_SCHEME}
    if staged.suffix == ".pte":
        export_pte(network, staged, record, int8_graph=int8, extra=extra)
        return reference, info, fp32_program_bytes(network), what
    with tempfile.TemporaryDirectory() as folder:
        onnx_file = staged if staged.suffix == ".onnx" else Path(folder) / "int8.onnx"
        _qdq_onnx(int8, onnx_file, record, extra)
        if staged.suffix == ".xml":
            export_openvino(onnx_file, staged)
        fp32 = export_onnx(network, Path(folder) / "fp32.onnx", info=record)
        return reference, info, fp32.stat().st_size, what


def _qdq_onnx(int8: torch.fx.GraphModule, path: Path, record: NetworkInfo, extra: dict) -> Path:
    """The converted graph as a QDQ ONNX model (torch's dynamo exporter), with the record."""
    from mobilenets.export.onnx import export_onnx

    return export_onnx(int8, path, info=record, metadata=extra, exporter="dynamo")
