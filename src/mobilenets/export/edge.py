"""Export to the runtimes MobileNets ship on: ExecuTorch with the XNNPACK delegate (``.pte``,
fp32 or int8) and OpenVINO (IR ``.xml`` + ``.bin``).

- ``.pte``: ``torch.export`` → ``to_edge_transform_and_lower`` with the XNNPACK partitioner →
  ExecuTorch program, batch 1 (what a phone runs). int8 goes through PyTorch's PT2E flow with the
  XNNPACK quantizer (:mod:`mobilenets.export.pt2e`), calibrated on the same seeded,
  class-stratified sample of real images as ``quantize`` does for ONNX, or trained (QAT).
- OpenVINO: ``openvino.convert_model`` of our ONNX export (fp32), or of any ``.onnx`` we wrote
  (``quantize``'s QDQ int8 model gives an int8 IR).

Each file carries the network's record (see :mod:`mobilenets.saved.edge`) and is checked on
export: fp32 against PyTorch (outputs within :data:`FP32_TOLERANCE`), int8 by agreement with fp32
on held-out images (the quantization report).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from mobilenets.errors import ConfigError, WeightsError, display
from mobilenets.export.onnx import output_names
from mobilenets.export.pt2e import quantize_pt2e
from mobilenets.fileio import atomic_path, temporary_folder
from mobilenets.saved.edge import (
    OPENVINO_INFO_KEY,
    PTE_INFO_METHOD,
    OpenVinoModel,
    PteProgram,
    encode_info,
    require_package,
)
from mobilenets.saved.info import NetworkInfo
from mobilenets.saved.onnx import onnx_info, onnx_metadata

#: The largest |difference| from PyTorch an fp32 export may show, relative to the logits' scale.
FP32_TOLERANCE = 1e-4


def network_record(
    model: nn.Module, info: NetworkInfo | None, resolution: int | None
) -> NetworkInfo:
    """The record a file carries: ``info`` (for a bare registry model, its name and keywords) at
    the export resolution."""
    if info is None:
        info = NetworkInfo(model.model_name, dict(model.model_kwargs))
    return replace(info, input_size=resolution or info.input_size)


def check_fp32(exported: nn.Module, model: nn.Module, size: int, where: Path) -> float:
    """The largest |difference| between an fp32 export and PyTorch on random images, relative
    to the logits' scale; an error (and no file) above :data:`FP32_TOLERANCE`."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, getattr(model, "in_chans", 3), size, size, generator=generator)
    with torch.no_grad():
        expected = model.eval()(x)
        got = exported(x)
    if not isinstance(expected, dict):
        expected, got = {"logits": expected}, {"logits": got}
    if not isinstance(got, dict) or list(got) != list(expected):
        raise WeightsError(
            f"{display(where)} returns {list(got) if isinstance(got, dict) else 'one output'}, "
            f"PyTorch {list(expected)}: not written"
        )
    difference = max(
        float((got[k] - v).abs().max()) / max(1.0, float(v.abs().max()))
        for k, v in expected.items()
    )
    if not difference <= FP32_TOLERANCE:
        raise WeightsError(
            f"{display(where)} differs from PyTorch by {difference:.2e} (relative; allowed "
            f"{FP32_TOLERANCE:g}): not written"
        )
    return difference


def fp32_program_bytes(model: nn.Module) -> int:
    """The size of an fp32 ``.pte`` of ``model`` without lowering one: its weights, BatchNorm
    folded, 4 bytes each (what the XNNPACK delegate stores; the programs of V1, V2 and
    V3-Small measured within 0.4% of it). ``quantize`` reports int8 against it: lowering an
    fp32 program only to weigh it took 4–10 s, a quarter of a ``.pte`` quantization."""
    from mobilenets.export.folding import fold_bn

    folded = fold_bn(model)
    return sum(
        t.numel() * 4
        for name, t in folded.state_dict().items()
        if t.is_floating_point() and not name.endswith(("running_mean", "running_var"))
    )


def export_pte(
    model: nn.Module,
    path: str | Path,
    info: NetworkInfo,
    *,
    calibration: Iterable[torch.Tensor] | None = None,
    int8_graph: nn.Module | None = None,
    extra: dict | None = None,
) -> Path:
    """Write an ExecuTorch program (XNNPACK delegate, batch 1) of ``model`` at
    ``info.input_size``; int8 when ``calibration`` batches are given (post-training) or an
    ``int8_graph`` is (a converted QAT network, :func:`~mobilenets.export.pt2e.convert_qat`).
    fp32 is checked against PyTorch before the file is kept."""
    require_package("executorch", "edge")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    path = Path(path)
    model = model.eval()
    example = torch.zeros(1, getattr(model, "in_chans", 3), info.input_size, info.input_size)
    int8 = calibration is not None or int8_graph is not None
    graph = model if not int8 else int8_graph
    if calibration is not None:
        graph = quantize_pt2e(model, example, calibration)
    outputs = output_names(model, example)
    record = {**(extra or {}), "batch": 1, "precision": "int8" if int8 else "fp32"}
    record["outputs"] = outputs
    text = encode_info(info, record).encode("utf-8")
    with torch.no_grad():
        program = to_edge_transform_and_lower(
            torch.export.export(graph, (example,)),
            partitioner=[XnnpackPartitioner()],
            constant_methods={PTE_INFO_METHOD: torch.tensor(list(text), dtype=torch.uint8)},
        ).to_executorch()
    with atomic_path(path) as tmp:
        tmp.write_bytes(program.buffer)
        if not int8:
            check_fp32(PteProgram(tmp), model, info.input_size, path)
    return path


def export_openvino(
    onnx_path: str | Path, path: str | Path, check: nn.Module | None = None
) -> Path:
    """Convert one of our ``.onnx`` files (fp32, or ``quantize``'s int8 QDQ) to OpenVINO IR
    (``path`` ``.xml`` and its ``.bin``), the record copied from the ONNX metadata. With
    ``check`` (the PyTorch network of an fp32 file), outputs are compared before the files are
    kept."""
    require_package("openvino", "openvino")
    import openvino as ov

    path = Path(path)
    if path.suffix != ".xml":
        raise ConfigError(f"an OpenVINO IR is written as FILE.xml (and FILE.bin), not {path.name}")
    meta = onnx_metadata(onnx_path)
    if "model" not in meta:
        onnx_info(onnx_path)  # its clear error for an ONNX file we did not write
    info = NetworkInfo.from_dict(meta, onnx_path)
    extra = {k: v for k, v in meta.items() if k not in info.to_dict()}
    model = ov.convert_model(str(onnx_path))
    model.set_rt_info(encode_info(info, extra), OPENVINO_INFO_KEY)
    with temporary_folder(path) as folder:
        tmp = folder / path.name
        ov.save_model(model, str(tmp), compress_to_fp16=False)
        if check is not None:
            check_fp32(OpenVinoModel(tmp), check, info.input_size, path)
        os.replace(tmp.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(tmp, path)  # the .xml last: a reader never finds it without its .bin
    return path
