"""safetensors weights that know what network they belong to.

The file's metadata holds the registry name and the constructor keywords, the input size,
mean/std, class names and where the weights came from, so ``load_weights(FILE)`` (or
``create_model(name, weights=FILE)``) rebuilds the right network, and ``predict`` preprocesses
images the way the weights expect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from mobilenets.models.registry import IMAGENET_MEAN, IMAGENET_STD, create_model

FORMAT = "mobilenets.weights/1"
CLASSIFIER_PREFIX = "classifier."


@dataclass
class WeightsInfo:
    """What a weights file says about itself."""

    model: str
    kwargs: dict
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    classes: list[str] = field(default_factory=list)
    source: str = ""
    resize: int | None = None  # short side before the center crop (None: input_size / 0.875)

    def to_metadata(self) -> dict[str, str]:
        return {
            "format": FORMAT,
            "model": self.model,
            "kwargs": json.dumps(self.kwargs),
            "input_size": str(self.input_size),
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "classes": json.dumps(self.classes),
            "source": self.source,
            "resize": json.dumps(self.resize),
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str], path: Path) -> WeightsInfo:
        if meta.get("format") != FORMAT:
            raise ValueError(
                f"{path} is a safetensors file but not mobilenets weights (no "
                f"'format': {FORMAT!r} metadata); convert it with `mobilenets "
                "convert --from torchvision|timm`"
            )
        return cls(
            meta["model"],
            json.loads(meta["kwargs"]),
            int(meta["input_size"]),
            tuple(json.loads(meta["mean"])),
            tuple(json.loads(meta["std"])),
            json.loads(meta["classes"]),
            meta.get("source", ""),
            json.loads(meta.get("resize", "null")),
        )


def save_weights(model: nn.Module, path: str | Path, info: WeightsInfo) -> None:
    """Write the model's state dict (BN buffers included) and ``info`` as safetensors."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata=info.to_metadata())
    tmp.replace(path)


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], WeightsInfo]:
    """Tensors and metadata of a weights file; a truncated or foreign file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"weights file {path} is truncated or not safetensors: {err}") from err
    return tensors, WeightsInfo.from_metadata(meta, path)


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
        raise ValueError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))
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
        raise ValueError(f"{path} holds {info.model} weights, not {expect_model}")
    different = {
        k: (info.kwargs.get(k), v)
        for k, v in (expect_kwargs or {}).items()
        if k != "num_classes" and info.kwargs.get(k) != v
    }
    if different:
        raise ValueError(
            f"{path} was saved with other settings: "
            + ", ".join(f"{k}={a!r} in the file, {b!r} asked" for k, (a, b) in different.items())
        )
    kwargs = dict(info.kwargs)
    file_classes = int(kwargs.get("num_classes", 1000))
    new_head = num_classes is not None and num_classes != file_classes
    if new_head:
        kwargs["num_classes"] = num_classes
        state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIX)}
    model = create_model(info.model, **kwargs)
    load_state_dict_strictly(model, state, str(path), allow_missing_classifier=new_head)
    model.weights_info = info
    return model.eval()
