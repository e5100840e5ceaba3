"""ONNX export (checked, constant-folded, with metadata) and an ONNX Runtime classifier."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobilenets.models.registry import IMAGENET_MEAN, IMAGENET_STD

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
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    x = torch.zeros(1, getattr(model, "in_chans", 3), resolution, resolution)
    axes = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(path))
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
    onnx.save(proto, str(path))
    return path


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
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {
        p.key.removeprefix(META_PREFIX): json.loads(p.value)
        for p in proto.metadata_props
        if p.key.startswith(META_PREFIX)
    }


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
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.metadata = onnx_metadata(path)
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
            meta = self.metadata
            transform = eval_transform(
                int(meta["input_size"]), tuple(meta["mean"]), tuple(meta["std"]), meta.get("resize")
            )
            images = torch.stack([transform(load_rgb(str(p))) for p in images])
        logits = torch.from_numpy(self(images))
        probs = logits.softmax(1)
        classes = self.metadata.get("classes") or [str(i) for i in range(probs.shape[1])]
        values, indices = probs.topk(min(topk, probs.shape[1]), dim=1)
        return [
            [(classes[i], v) for i, v in zip(idx, val, strict=True)]
            for idx, val in zip(indices.tolist(), values.tolist(), strict=True)
        ]
