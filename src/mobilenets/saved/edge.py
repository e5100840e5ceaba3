"""Networks exported for edge runtimes, as saved networks: ExecuTorch programs (``.pte``, the
XNNPACK delegate) and OpenVINO IR (``.xml`` + ``.bin``), each with its :class:`NetworkInfo`.

Both carry the record the way their format allows: a ``.pte`` holds it as a constant method
(``mobilenets_info``, the JSON as a uint8 tensor, read without running the network); an IR holds
it in its ``rt_info`` under ``mobilenets/info``. Each runs behind the ``nn.Module`` call, so
``predict``, ``eval`` and the benchmark treat them like a PyTorch network.

Writing them is :mod:`mobilenets.export.edge`; this module reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import msgspec
import numpy as np
import torch

from mobilenets.cpu import chosen_threads, default_threads
from mobilenets.errors import ConfigError, WeightsError, display
from mobilenets.fileio import require_file
from mobilenets.saved.info import NetworkInfo
from mobilenets.saved.onnx import named_outputs
from mobilenets.schema import Text, decode, validate

PTE_INFO_METHOD = "mobilenets_info"
OPENVINO_INFO_KEY = ["mobilenets", "info"]
#: OpenVINO's precision by our name: fp32 unless asked (it runs bf16 by default on CPUs with
#: AVX-512 BF16, as this one, silently changing the outputs).
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


def require_package(package: str, extra: str) -> None:
    """A clear error naming the extra to install when ``package`` is missing."""
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise ConfigError(f"this needs the {package} package: pip install 'mobilenets[{extra}]'")


def encode_info(info: NetworkInfo, extra: dict | None = None) -> str:
    return json.dumps({**info.to_dict(), **(extra or {})})


class ExportRecord(msgspec.Struct):
    """What an exported file's record holds beside the :class:`NetworkInfo` (other keys are the
    exporter's notes and are ignored): the batch the program takes."""

    batch: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 1
    outputs: Annotated[list[Text], msgspec.Meta(min_length=1, max_length=64)] = msgspec.field(
        default_factory=lambda: ["logits"]
    )


def _decode_info(text: str | bytes, where: Path) -> tuple[NetworkInfo, dict]:
    data = decode(text.encode() if isinstance(text, str) else text, dict, where, WeightsError)
    validate(data, ExportRecord, f"{display(where)}: record", WeightsError)
    return NetworkInfo.from_dict(data, where), data


def set_executorch_threads(threads: int) -> None:
    """The size of ExecuTorch's thread pool (one per process, shared by every program; by
    default one thread per core, whatever torch's setting). Set it before loading programs:
    resizing it under programs already loaded did not change their speed here, and one such
    run then failed inside OpenVINO in the same process."""
    from executorch.extension.pybindings.portable_lib import (
        _threadpool_get_thread_count,
        _unsafe_reset_threadpool,
    )

    if _threadpool_get_thread_count() != threads:
        _unsafe_reset_threadpool(threads)


def _pte_record(program: object, where: Path) -> tuple[NetworkInfo, dict]:
    if PTE_INFO_METHOD not in program.method_names:
        raise WeightsError(
            f"{display(where)} carries no mobilenets record (export it with "
            "`mobilenets export --format pte`)"
        )
    raw = program.load_method(PTE_INFO_METHOD).execute([])[0]
    return _decode_info(bytes(raw.tolist()), where)


def _load_pte(path: Path) -> object:
    from executorch.runtime import Runtime

    try:
        return Runtime.get().load_program(str(path))
    except Exception as err:  # the runtime's RuntimeError for a damaged file
        raise WeightsError(f"ExecuTorch cannot load {display(path)}: {display(err)[:200]}") from err


def _read_openvino(path: Path) -> tuple[object, NetworkInfo, dict]:
    import openvino as ov

    try:
        model = ov.Core().read_model(str(path))
    except Exception as err:
        raise WeightsError(f"OpenVINO cannot read {display(path)}: {display(err)[:200]}") from err
    if not model.has_rt_info(OPENVINO_INFO_KEY):
        raise WeightsError(
            f"{display(path)} carries no mobilenets record (export it with "
            "`mobilenets export --format openvino`)"
        )
    info, record = _decode_info(model.get_rt_info(OPENVINO_INFO_KEY).astype(str), path)
    return model, info, record


def edge_info(path: str | Path) -> NetworkInfo:
    """The record of a ``.pte`` or OpenVINO ``.xml`` file, read without compiling the network."""
    path = Path(path)
    if path.suffix == ".pte":
        require_package("executorch", "edge")
        return _pte_record(_load_pte(require_file(path, "an ExecuTorch program")), path)[0]
    require_package("openvino", "openvino")
    return _read_openvino(require_file(path, "an OpenVINO IR (.xml)"))[1]


class PteProgram(torch.nn.Module):
    """An ExecuTorch program run by ExecuTorch's Python runtime; ``forward`` takes any batch
    (the program takes the batch it was exported with, 1: larger batches run image by image).
    ``threads`` sets ExecuTorch's (process-wide) thread pool before the program loads; the
    default, ``--threads`` or ``OMP_NUM_THREADS`` where given, else ExecuTorch's own (every
    core: the fastest at batch 1 on 2 cores, ``benchmarks/threads.py``)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        require_package("executorch", "edge")
        from executorch.runtime import Runtime

        threads = threads or chosen_threads()
        if threads:
            set_executorch_threads(threads)

        self.path = require_file(path, "an ExecuTorch program")
        try:
            self.program = Runtime.get().load_program(str(self.path))
            self.method = self.program.load_method("forward")
        except Exception as err:  # the runtime's RuntimeError for a damaged file
            raise WeightsError(
                f"ExecuTorch cannot load {display(self.path)}: {display(err)[:200]}"
            ) from err
        self.info, self.record = _pte_record(self.program, self.path)  # ExportRecord-checked
        self.batch = self.record.get("batch", 1)
        self.output_names = self.record.get("outputs", ["logits"])

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        x = x.detach().cpu().float().contiguous()
        parts = [
            self.method.execute([x[i : i + self.batch].contiguous()])
            for i in range(0, len(x), self.batch)
        ]
        if len(parts[0]) != len(self.output_names):
            raise WeightsError(
                f"{display(self.path)} returns {len(parts[0])} outputs but its record names "
                f"{len(self.output_names)}"
            )
        joined = [torch.cat([part[i] for part in parts]) for i in range(len(self.output_names))]
        return named_outputs(self.output_names, joined)


class OpenVinoModel(torch.nn.Module):
    """An OpenVINO IR compiled for the CPU at an explicit precision (fp32 by default)."""

    def __init__(
        self, path: str | Path, precision: str = "fp32", threads: int | None = None
    ) -> None:
        super().__init__()
        require_package("openvino", "openvino")
        import openvino as ov

        if precision not in OPENVINO_PRECISIONS:
            raise ConfigError(
                f"OpenVINO precision must be one of {tuple(OPENVINO_PRECISIONS)}, got {precision!r}"
            )
        self.path = require_file(path, "an OpenVINO IR (.xml)")
        model, self.info, self.record = _read_openvino(self.path)
        config = {
            "INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision],
            "INFERENCE_NUM_THREADS": threads or default_threads(),
        }
        self.compiled = ov.Core().compile_model(model, "CPU", config)
        self.precision = precision
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        array = np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)
        result = self.compiled(array)
        values = [np.asarray(result[i]).copy() for i in range(len(self.output_names))]
        return named_outputs(self.output_names, values)
