"""ONNX export (checked, constant-folded, with metadata) and an ONNX Runtime classifier."""

from __future__ import annotations

import errno
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobilenets.errors import WeightsError, display
from mobilenets.fileio import atomic_path
from mobilenets.models.registry import IMAGENET_MEAN, IMAGENET_STD
from mobilenets.weights.io import WeightsInfo

OPSET = 18
INPUT, OUTPUT = "input", "logits"
META_PREFIX = "mobilenets."


def export_onnx(
    model: nn.Module,
    path: str | Path,
    resolution: int = 224,
    *,
    dynamic_batch: bool = True,
    opset: int = OPSET,
    metadata: dict[str, object] | None = None,
) -> Path:
    """Export ``model`` (eval mode) to ONNX and check it with ``onnx.checker``.

    Uses torch's TorchScript-based exporter with constant folding (0.3 s for a MobileNet; the
    dynamo exporter needs onnxscript and took 13–17 s here). The graph carries metadata: the
    registry name and keywords, input size, mean/std and class names, when known.
    """
    import onnx

    path = Path(path)
    model = model.eval()
    x = torch.zeros(1, getattr(model, "in_chans", 3), resolution, resolution)
    axes = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}} if dynamic_batch else None
    with atomic_path(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                model,
                (x,),
                str(tmp),
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        _finish(proto, model, resolution, metadata)
        onnx.save(proto, str(tmp))
    return path


def _finish(proto: object, model: nn.Module, resolution: int, metadata: dict | None) -> None:
    """Store the metadata in an exported graph and check it with ``onnx.checker``."""
    import onnx

    info = {
        "model": getattr(model, "model_name", type(model).__name__),
        "kwargs": getattr(model, "model_kwargs", {}),
        "input_size": resolution,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "classes": [],
        **(metadata or {}),
    }
    set_onnx_metadata(proto, info)
    onnx.checker.check_model(proto, full_check=True)


def set_onnx_metadata(proto: object, info: dict[str, object]) -> None:
    """Store ``info`` in a ModelProto's metadata (JSON values under ``mobilenets.*`` keys)."""
    keep = [p for p in proto.metadata_props if not p.key.startswith(META_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in info.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, json.dumps(value)


def onnx_metadata(path: str | Path) -> dict[str, object]:
    """The metadata ``export_onnx`` stored in a model."""
    proto = load_onnx(path)
    meta = {}
    for p in proto.metadata_props:
        if p.key.startswith(META_PREFIX):
            try:
                meta[p.key.removeprefix(META_PREFIX)] = json.loads(p.value)
            except ValueError:
                raise WeightsError(
                    f"{display(path)}: ONNX metadata {display(p.key)} is not valid JSON"
                ) from None
    return meta


def load_onnx(path: str | Path) -> object:
    """An ONNX ModelProto, or a clear error for a missing, truncated or foreign file."""
    import onnx

    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{display(path)} is a folder, not an .onnx model")
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "ONNX model does not exist", str(path))
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and friends
        raise WeightsError(
            f"{display(path)} is truncated or not an ONNX model: {display(err)[:200]}"
        ) from err


def onnx_info(path: str | Path) -> WeightsInfo:
    """The network record an exported model carries, validated like a weights file's."""
    meta = onnx_metadata(path)
    if "model" not in meta:
        raise WeightsError(
            f"{display(path)} carries no mobilenets metadata (export it with `mobilenets "
            "export`), so its input size, normalization and classes are unknown"
        )
    return WeightsInfo.from_dict(meta, path)


class OnnxClassifier:
    """An ONNX Runtime session that takes image tensors or files and returns logits or top-k.

    Preprocessing comes from the model's metadata (input size, mean/std), the same as
    evaluation: resize to ``size / 0.875``, center crop, normalize.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.metadata = onnx_metadata(path)
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime's InvalidProtobuf, Fail, ...
            raise WeightsError(
                f"ONNX Runtime cannot load {display(path)}: {display(err)[:200]}"
            ) from err
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        array = x.numpy() if isinstance(x, torch.Tensor) else x
        return self.session.run(None, {self.input_name: np.ascontiguousarray(array, np.float32)})[0]

    def predict(
        self, images: list[str | Path] | torch.Tensor, topk: int = 5
    ) -> list[list[tuple[str, float]]]:
        """Top-k (class name, probability) per image file or per tensor in a batch."""
        from mobilenets.data.folder import load_rgb
        from mobilenets.data.transforms import eval_transform

        if not isinstance(images, torch.Tensor):
            info = onnx_info(self.path)
            transform = eval_transform(info.input_size, info.mean, info.std, info.resize)
            images = torch.stack([transform(load_rgb(str(p))) for p in images])
        logits = torch.from_numpy(self(images))
        probs = logits.softmax(1)
        classes = self.metadata.get("classes") or [str(i) for i in range(probs.shape[1])]
        values, indices = probs.topk(min(topk, probs.shape[1]), dim=1)
        return [
            [(classes[i], v) for i, v in zip(idx, val, strict=True)]
            for idx, val in zip(indices.tolist(), values.tolist(), strict=True)
        ]
