"""Top-k predictions with class names for image files, preprocessed as the weights expect."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mobilenets.data.folder import load_rgb
from mobilenets.data.transforms import eval_transform
from mobilenets.errors import BadImageError
from mobilenets.weights.io import load_weights


@dataclass(frozen=True)
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class name, probability), best first
    error: str | None = None  # why the image was skipped (with ``skip_bad_images``)


@torch.inference_mode()
def predict(
    weights: str | Path | nn.Module,
    images: list[str | Path],
    topk: int = 5,
    batch_size: int = 16,
    *,
    skip_bad_images: bool = False,
) -> list[Prediction]:
    """Classify image files with a weights file (or a model loaded by :func:`load_weights`).

    An unreadable image raises :class:`BadImageError` naming it, or with ``skip_bad_images``
    gets a :class:`Prediction` with ``error`` set and no classes.
    """
    model = load_weights(weights) if not isinstance(weights, nn.Module) else weights.eval()
    info = model.weights_info
    transform = eval_transform(info.input_size, info.mean, info.std, info.resize)
    classes = info.classes or [str(i) for i in range(model.num_classes)]
    k = min(topk, len(classes))
    out = []
    for start in range(0, len(images), batch_size):
        chunk, tensors = [], []
        for path in map(str, images[start : start + batch_size]):
            try:
                tensors.append(transform(load_rgb(path)))
                chunk.append(path)
            except BadImageError as err:
                if not skip_bad_images:
                    raise
                out.append(Prediction(path, [], str(err)))
        if not tensors:
            continue
        probs = model(torch.stack(tensors)).softmax(1)
        values, indices = probs.topk(k, dim=1)
        for path, vals, idxs in zip(chunk, values.tolist(), indices.tolist(), strict=True):
            out.append(Prediction(path, [(classes[i], v) for i, v in zip(idxs, vals, strict=True)]))
    order = {str(p): i for i, p in enumerate(images)}
    return sorted(out, key=lambda p: order.get(p.path, 0))
