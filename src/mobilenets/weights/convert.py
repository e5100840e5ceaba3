"""Converters from torchvision's and timm's MobileNet state dicts to ours.

Both libraries register their layers in the papers' order, as ours do (stem; per block: expand,
depthwise, SE, project; head; classifier), so the key map pairs the two state dicts in order and
checks each pair: the same kind of tensor (weight, bias, running_mean, ...), the same shape
(timm's 1×1 ``conv_head`` becomes our ``Linear``), and the same count. Anything else is refused
with the keys and shapes at fault, never half-loaded.

The architectural options each source needs are set on our model: torchvision V3 scales every
channel (``channel_rules="torchvision"``) with BN eps 1e-3; timm keeps the V3 stem and head
(``channel_rules="timm"``), uses BN eps 1e-5, and ReLU6 in V1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mobilenets.models.registry import create_model

SOURCES = ("torchvision", "timm")
TORCHVISION_MODELS = ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")
_TIMM_NAME = re.compile(
    r"^(?P<tf>tf_)?mobilenetv(?P<family>1|2|3_large|3_small)(?P<minimal>_minimal)?_(?P<w>\d{3})$"
)


@dataclass(frozen=True)
class Target:
    """Our registry name and keywords for a source model."""

    model: str
    kwargs: dict


def torchvision_target(
    name: str, width_mult: float = 1.0, num_classes: int = 1000, reduced_tail: bool = False
) -> Target:
    """Our equivalent of ``torchvision.models.<name>(width_mult=..., ...)``."""
    if name not in TORCHVISION_MODELS:
        raise ValueError(
            f"torchvision has no MobileNet named {name!r}; supported: "
            f"{', '.join(TORCHVISION_MODELS)} (torchvision has no MobileNetV1)"
        )
    kwargs: dict = {"width_mult": width_mult, "num_classes": num_classes}
    if name.startswith("mobilenet_v3"):
        kwargs.update(channel_rules="torchvision", bn_eps=1e-3, reduced_tail=reduced_tail)
    return Target(name, kwargs)


def timm_target(name: str, num_classes: int = 1000) -> Target:
    """Our equivalent of ``timm.create_model(name)`` for timm's MobileNet V1/V2/V3 names."""
    match = _TIMM_NAME.match(name)
    if not match:
        raise ValueError(
            f"cannot convert timm model {name!r}: supported are mobilenetv1_NNN, mobilenetv2_NNN, "
            "mobilenetv3_large_NNN and mobilenetv3_small_NNN (NNN = 100·α); timm's variants "
            "with other block layouts (mobilenetv1_100h, mobilenetv2_110d, mobilenetv3_rw, ...) "
            "are not the papers' networks"
        )
    if match["tf"]:
        raise ValueError(
            f"cannot convert timm model {name!r}: the tf_ ports use TensorFlow 'SAME' "
            "(asymmetric) padding on stride-2 convs, which our networks do not implement, so "
            "outputs would differ; use timm's mobilenetv3_* weights"
        )
    width = int(match["w"]) / 100
    family = match["family"]
    kwargs: dict = {"width_mult": width, "num_classes": num_classes, "bn_eps": 1e-5}
    if family == "1":
        return Target("mobilenet_v1", {**kwargs, "act": "relu6"})
    if family == "2":
        return Target("mobilenet_v2", kwargs)
    kwargs.update(channel_rules="timm", minimalistic=bool(match["minimal"]))
    return Target(f"mobilenet_{family.replace('3', 'v3')}", kwargs)


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def key_map(source: dict[str, torch.Tensor], model: nn.Module) -> list[tuple[str, str]]:
    """Pairs (source key, our key), in order, after checking kinds, shapes and counts."""
    ours = model.state_dict()
    src_keys, our_keys = list(source), list(ours)
    if len(src_keys) != len(our_keys):
        raise ValueError(
            f"the source state dict has {len(src_keys)} tensors but {model.model_name} with "
            f"{model.model_kwargs} has {len(our_keys)}: another architecture or width; first "
            f"source keys {src_keys[:3]}, ours {our_keys[:3]}"
        )
    pairs = []
    for src, dst in zip(src_keys, our_keys, strict=True):
        a, b = source[src], ours[dst]
        same_shape = a.shape == b.shape or (
            a.numel() == b.numel() and a.dim() == 4 and b.dim() == 2
        )
        if _kind(src) != _kind(dst) or not same_shape:
            raise ValueError(
                f"source key {src!r} {tuple(a.shape)} does not match our {dst!r} "
                f"{tuple(b.shape)}: another architecture or width than {model.model_name} with "
                f"{model.model_kwargs}"
            )
        pairs.append((src, dst))
    return pairs


def convert_state_dict(source: dict[str, torch.Tensor], target: Target) -> nn.Module:
    """Build our network for ``target`` and load ``source`` into it through :func:`key_map`."""
    model = create_model(target.model, **target.kwargs)
    ours = model.state_dict()
    converted = {
        dst: source[src].reshape(ours[dst].shape).clone() for src, dst in key_map(source, model)
    }
    model.load_state_dict(converted, strict=True)
    return model.eval()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``/``.pt``/``.bin`` (``weights_only=True``) or ``.safetensors``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"state-dict file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is truncated or not a state dict: {err}") from err
    for wrapper in ("state_dict", "model", "state_dict_ema"):  # training checkpoints
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def classifier_outputs(state: dict[str, torch.Tensor]) -> int:
    """Number of classes of a source state dict (its last 2-D weight)."""
    weights = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    if not weights:
        raise ValueError("the state dict has no classifier (no 2-D weight)")
    return int(weights[-1].shape[0])
