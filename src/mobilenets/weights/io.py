"""safetensors weights that know what network they belong to.

The file's metadata holds the registry name and the constructor keywords, the input size,
mean/std, class names and where the weights came from, so ``load_weights(FILE)`` (or
``create_model(name, weights=FILE)``) rebuilds the right network, and ``predict`` preprocesses
images the way the weights expect.
"""

from __future__ import annotations

import errno
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from mobilenets.errors import WeightsError, display
from mobilenets.fileio import atomic_path, nonfinite_tensors
from mobilenets.models.base import MIN_INPUT_SIZE
from mobilenets.models.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    create_model,
    list_models,
    model_arguments,
)

FORMAT = "mobilenets.weights/1"
CLASSIFIER_PREFIX = "classifier."
MAX_INPUT_SIZE = 4096
METADATA_FIELDS = ("model", "kwargs", "input_size", "mean", "std", "classes", "source", "resize")


@dataclass
class WeightsInfo:
    """What a weights file says about itself (validated when read: metadata is data, not trust)."""

    model: str
    kwargs: dict
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    classes: list[str] = field(default_factory=list)
    source: str = ""
    resize: int | None = None  # short side before the center crop (None: input_size / 0.875)

    @property
    def num_classes(self) -> int:
        return int(self.kwargs.get("num_classes", 1000))

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "kwargs": self.kwargs,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "classes": list(self.classes),
            "source": self.source,
            "resize": self.resize,
        }

    def to_metadata(self) -> dict[str, str]:
        """safetensors metadata: every value a string (JSON where it is not text)."""
        meta = {k: json.dumps(v) for k, v in self.to_dict().items()}
        meta.update(format=FORMAT, model=self.model, source=self.source)
        meta["input_size"] = str(self.input_size)
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, str], path: str | Path) -> WeightsInfo:
        if meta.get("format") != FORMAT:
            raise WeightsError(
                f"{display(path)} is a safetensors file but not mobilenets weights (no "
                f"'format': {FORMAT!r} metadata); convert it with `mobilenets "
                "convert --from torchvision|timm`"
            )
        decoded: dict[str, object] = {}
        for key in METADATA_FIELDS:
            if key not in meta:
                if key in ("source", "resize"):
                    continue
                raise WeightsError(f"{display(path)}: metadata has no {key!r} entry")
            if key in ("model", "source"):
                decoded[key] = meta[key]
                continue
            try:
                decoded[key] = json.loads(meta[key])
            except ValueError:
                raise WeightsError(
                    f"{display(path)}: metadata {key!r} is not valid JSON: "
                    f"{display(meta[key])[:80]}"
                ) from None
        return cls.from_dict(decoded, path)

    @classmethod
    def from_dict(cls, data: dict[str, object], path: str | Path) -> WeightsInfo:
        """Build and validate from decoded metadata (safetensors or ONNX): every field checked."""
        where = display(path)

        def bad(key: str, allowed: str) -> WeightsError:
            value = display(repr(data.get(key)))
            return WeightsError(f"{where}: metadata {key!r} is {value[:80]}; expected {allowed}")

        name = data.get("model")
        if not isinstance(name, str) or name not in list_models():
            raise bad("model", f"a registered model name ({', '.join(list_models())})")
        kwargs = data.get("kwargs")
        if not isinstance(kwargs, dict):
            raise bad("kwargs", "a JSON object of constructor keywords")
        allowed = model_arguments(name)
        unknown = [k for k in kwargs if k not in allowed]
        if unknown:
            raise WeightsError(
                f"{where}: metadata keywords {[display(k) for k in unknown]} are not arguments "
                f"of {name}; allowed: {', '.join(allowed)}"
            )
        size = data.get("input_size")
        if isinstance(size, str) and size.isdigit():
            size = int(size)
        if isinstance(size, bool) or not isinstance(size, int):
            raise bad("input_size", f"an integer in [{MIN_INPUT_SIZE}, {MAX_INPUT_SIZE}]")
        if not MIN_INPUT_SIZE <= size <= MAX_INPUT_SIZE:
            raise bad("input_size", f"an integer in [{MIN_INPUT_SIZE}, {MAX_INPUT_SIZE}]")
        in_chans = kwargs.get("in_chans", 3)
        if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
            raise bad("kwargs", "in_chans a positive integer")
        norms = {}
        for key in ("mean", "std"):
            values = data.get(key)
            if (
                not isinstance(values, list | tuple)
                or len(values) != in_chans
                or not all(_finite_number(v) for v in values)
                or (key == "std" and not all(v > 0 for v in values))
            ):
                positive = " > 0" if key == "std" else ""
                raise bad(key, f"a list of {in_chans} finite numbers{positive} (one per channel)")
            norms[key] = tuple(float(v) for v in values)
        classes = data.get("classes")
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise bad("classes", "a list of class-name strings")
        num_classes = kwargs.get("num_classes", 1000)
        if classes and len(classes) != num_classes:
            raise WeightsError(
                f"{where}: metadata names {len(classes)} classes but the classifier has "
                f"{num_classes} outputs"
            )
        resize = data.get("resize")
        if resize is not None and (
            isinstance(resize, bool)
            or not isinstance(resize, int)
            or not size <= resize <= 2 * MAX_INPUT_SIZE
        ):
            raise bad("resize", f"null or an integer in [{size}, {2 * MAX_INPUT_SIZE}]")
        source = data.get("source", "")
        if not isinstance(source, str):
            raise bad("source", "text")
        return cls(name, kwargs, size, norms["mean"], norms["std"], classes, source, resize)


def _finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def save_weights(model: nn.Module, path: str | Path, info: WeightsInfo) -> None:
    """Write the model's state dict (BN buffers included) and ``info`` as safetensors."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    bad = nonfinite_tensors(state)
    if bad:
        raise WeightsError(
            f"not writing {display(path)}: the weights hold NaN or inf in {', '.join(bad[:5])}"
        )
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=info.to_metadata())


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], WeightsInfo]:
    """Tensors and metadata of a weights file; a truncated or foreign file is a clear error."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{display(path)} is a folder, not a .safetensors weights file")
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "weights file does not exist", str(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise WeightsError(
            f"weights file {display(path)} is truncated or not safetensors: {display(err)}"
        ) from err
    info = WeightsInfo.from_metadata(meta, path)
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
    kwargs = dict(info.kwargs)
    file_classes = int(kwargs.get("num_classes", 1000))
    new_head = num_classes is not None and num_classes != file_classes
    if new_head:
        kwargs["num_classes"] = num_classes
        state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIX)}
    try:
        model = create_model(info.model, **kwargs)
    except (TypeError, ValueError) as err:  # the metadata is data: its keywords may be wrong
        raise WeightsError(
            f"{display(path)}: its metadata does not build a network: {display(err)}"
        ) from err
    load_state_dict_strictly(model, state, str(path), allow_missing_classifier=new_head)
    model.weights_info = info
    return model.eval()
