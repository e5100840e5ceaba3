"""ONNX models as saved networks: their metadata (the :class:`NetworkInfo` under
``mobilenets.*`` keys) and an ONNX Runtime session that runs them.

Writing a model is :func:`mobilenets.export.export_onnx`; this module reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from mobilenets.cpu import SCHEMES, default_threads, warn_if_other_cpu
from mobilenets.errors import WeightsError, display
from mobilenets.fileio import require_file
from mobilenets.saved.info import NetworkInfo
from mobilenets.schema import validate

META_PREFIX = "mobilenets."


def set_onnx_metadata(proto: object, values: dict[str, object]) -> None:
    """Store ``values`` in a ModelProto's metadata (JSON values under ``mobilenets.*`` keys),
    replacing what was there under that prefix."""
    keep = [p for p in proto.metadata_props if not p.key.startswith(META_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, json.dumps(value)


def load_onnx(path: str | Path) -> object:
    """An ONNX ModelProto, or a clear error for a missing, truncated or foreign file."""
    import onnx

    path = require_file(path, "an ONNX model")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and friends
        raise WeightsError(
            f"{display(path)} is truncated or not an ONNX model: {display(err)[:200]}"
        ) from err


def onnx_metadata(path: str | Path, proto: object | None = None) -> dict[str, object]:
    """Every ``mobilenets.*`` metadata entry of a model, JSON-decoded (not yet validated);
    ``proto`` is the model when the caller has parsed it already."""
    meta = {}
    for p in (proto if proto is not None else load_onnx(path)).metadata_props:
        if p.key.startswith(META_PREFIX):
            try:
                meta[p.key.removeprefix(META_PREFIX)] = json.loads(p.value)
            except ValueError:
                raise WeightsError(
                    f"{display(path)}: ONNX metadata {display(p.key)} is not valid JSON"
                ) from None
    return meta


def onnx_info(path: str | Path) -> NetworkInfo:
    """The network record an exported model carries, validated like a weights file's."""
    meta = onnx_metadata(path)
    if "model" not in meta:
        raise WeightsError(
            f"{display(path)} carries no mobilenets metadata (export it with `mobilenets "
            "export`), so its input size, normalization and classes are unknown"
        )
    return NetworkInfo.from_dict(meta, path)


class OnnxSession:
    """An ONNX Runtime session on the CPU: ``session.outputs(batch)`` returns every output by
    the name it was exported under, ``session(batch)`` the first (a classifier's logits).

    ``threads`` defaults to ``--threads``, else ``OMP_NUM_THREADS``, else every core
    (:func:`~mobilenets.cpu.default_threads`), with the workers spinning between
    calls (ONNX Runtime's own default, set explicitly): at batch 1 on 2 cores that is 1.6–1.9×
    faster than 1 thread, and without spinning 2 threads are slower than 1
    (``benchmarks/threads.py``).
    """

    def __init__(self, path: str | Path, threads: int | None = None, spinning: bool = True) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spinning else "0"
        )
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        proto = load_onnx(path)  # a clear error for a missing or damaged file
        made_for = onnx_metadata(path, proto).get("int8_target_cpu")
        if made_for is not None:  # read back like every record field: validated, one line
            kinds = Literal[tuple(SCHEMES)]  # type: ignore[valid-type]
            where = f"{path}: metadata int8_target_cpu (one of {', '.join(SCHEMES)})"
            warn_if_other_cpu(path, validate(made_for, kinds, where, WeightsError))
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime's InvalidProtobuf, Fail, ...
            raise WeightsError(
                f"ONNX Runtime cannot load {display(path)}: {display(err)[:200]}"
            ) from err
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, x: torch.Tensor | np.ndarray) -> list[np.ndarray]:
        array = x.numpy() if isinstance(x, torch.Tensor) else x
        return self.session.run(None, {self.input_name: np.ascontiguousarray(array, np.float32)})

    def outputs(self, x: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the model on ``x``, by name."""
        return dict(zip(self.output_names, self._run(x), strict=True))

    def __call__(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        return self._run(x)[0]


def named_outputs(names: list[str], values: list) -> torch.Tensor | dict[str, torch.Tensor]:
    """An exported network's outputs as its PyTorch module returns them: the tensor of a
    classifier (one output, ``logits``), else a dict of every output by name (as torchvision's
    dense models: ``{"out"}`` or ``{"out", "aux"}``)."""
    tensors = [torch.as_tensor(np.asarray(v)) for v in values]
    if list(names) == ["logits"]:
        return tensors[0]
    return dict(zip(names, tensors, strict=True))


class OnnxModule(torch.nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` call interface (eval only), so the
    evaluation loop and prediction run PyTorch and ONNX models alike; a network with several
    outputs returns them as a dict by name."""

    def __init__(self, session: OnnxSession) -> None:
        super().__init__()
        self.session = session
        self.output_names = session.output_names

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        return named_outputs(self.output_names, self.session._run(x.detach().cpu().contiguous()))
