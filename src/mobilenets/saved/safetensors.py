"""safetensors weights that know what network they belong to.

The file's metadata is the network's :class:`NetworkInfo` (registry name and keywords, input
size, normalization, eval resize, class names, source), so ``load_weights(FILE)`` rebuilds the
right network, and prediction preprocesses images the way the weights expect.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from mobilenets.errors import WeightsError, display
from mobilenets.fileio import atomic_path, nonfinite_tensors, require_file
from mobilenets.saved.info import NetworkInfo

FORMAT = "mobilenets.weights/1"
CLASSIFIER_PREFIX = "classifier."


def weights_metadata(info: NetworkInfo) -> dict[str, str]:
    """The safetensors metadata of a mobilenets weights file: the format mark and the record."""
    return {"format": FORMAT, **info.to_metadata()}


def save_weights(model: nn.Module, path: str | Path, info: NetworkInfo) -> None:
    """Write the model's state dict (BN buffers included) and ``info`` as safetensors."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    bad = nonfinite_tensors(state)
    if bad:
        raise WeightsError(
            f"not writing {display(path)}: the weights hold NaN or inf in {', '.join(bad[:5])}"
        )
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=weights_metadata(info))


def _open(path: Path, tensors: bool) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            found = {key: f.get_tensor(key) for key in f.keys()} if tensors else {}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise WeightsError(
            f"weights file {display(path)} is truncated or not safetensors: {display(err)}"
        ) from err
    if meta.get("format") != FORMAT:
        raise WeightsError(
            f"{display(path)} is a safetensors file but not mobilenets weights (no "
            f"'format': {FORMAT!r} metadata); convert it with `mobilenets "
            "convert --from torchvision|timm`"
        )
    return found, meta


def read_record(path: str | Path) -> NetworkInfo:
    """The record of a weights file, without reading its tensors."""
    path = require_file(path, "a .safetensors weights file")
    return NetworkInfo.from_metadata(_open(path, tensors=False)[1], path)


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], NetworkInfo]:
    """Tensors and metadata of a weights file; a truncated or foreign file is a clear error."""
    path = require_file(path, "a .safetensors weights file")
    tensors, meta = _open(path, tensors=True)
    info = NetworkInfo.from_metadata(meta, path)
    for key, value in tensors.items():
        integer = key.endswith("num_batches_tracked")
        if value.is_floating_point() == integer:
            raise WeightsError(
                f"{display(path)}: tensor {display(key)} has dtype {value.dtype}; weights must "
                "be floating point (num_batches_tracked an integer)"
            )
    bad = nonfinite_tensors(tensors)
    if bad:
        raise WeightsError(
            f"{display(path)} holds NaN or inf in {', '.join(map(display, bad[:5]))}: "
            "refusing to use diverged weights"
        )
    return tensors, info


def attach(model: nn.Module, info: NetworkInfo) -> None:
    """Give a loaded network its record, and timm's ``pretrained_cfg`` from it."""
    model.network_info = info
    model.pretrained_cfg = {**getattr(model, "pretrained_cfg", {}), **info.pretrained_cfg()}


def load_state_dict_strictly(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    allow_missing_classifier: bool = False,
) -> None:
    """Load every key or none: missing, unexpected and mis-shaped keys are named with shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if allow_missing_classifier:
        missing = [k for k in missing if not k.startswith(CLASSIFIER_PREFIX)]
    shapes = [
        f"{k}: file {tuple(state[k].shape)}, model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:6]}{' ...' if len(missing) > 6 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
    if shapes:
        problems.append("mismatched shapes: " + "; ".join(shapes[:6]))
    if problems:
        raise WeightsError(
            f"{display(source)} does not fit {type(model).__name__}: " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=not allow_missing_classifier)


def load_weights(
    path: str | Path,
    num_classes: int | None = None,
    *,
    expect_model: str | None = None,
    expect_kwargs: dict | None = None,
) -> nn.Module:
    """Rebuild the network a weights file was saved from and load it (eval mode).

    ``num_classes`` different from the file's drops only the classifier (every other key must
    load), for fine-tuning on another label set. ``expect_model``/``expect_kwargs`` (what
    ``create_model(name, weights=FILE, **kwargs)`` asked for) must agree with the file.
    """
    state, info = read_weights(path)
    if expect_model is not None and info.model != expect_model:
        raise WeightsError(f"{display(path)} holds {info.model} weights, not {expect_model}")
    different = {
        k: (info.kwargs.get(k), v)
        for k, v in (expect_kwargs or {}).items()
        if k != "num_classes" and info.kwargs.get(k) != v
    }
    if different:
        raise WeightsError(
            f"{display(path)} was saved with other settings: "
            + ", ".join(f"{k}={a!r} in the file, {b!r} asked" for k, (a, b) in different.items())
        )
    new_head = num_classes is not None and num_classes != info.num_classes
    if new_head:
        info = info.with_classes([str(i) for i in range(num_classes)])
        state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIX)}
    try:
        model = info.build()
    except (TypeError, ValueError) as err:  # the metadata is data: its keywords may be wrong
        raise WeightsError(
            f"{display(path)}: its metadata does not build a network: {display(err)}"
        ) from err
    load_state_dict_strictly(model, state, str(path), allow_missing_classifier=new_head)
    attach(model, info)
    return model.eval()
