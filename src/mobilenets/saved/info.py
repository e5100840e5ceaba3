"""``NetworkInfo``: the one record of what a saved network is and how to feed it.

The same record is written into a training checkpoint, into safetensors metadata and into ONNX
metadata, and read back (and validated: a file's metadata is data, not trust) by the same code.
It is the only place evaluation preprocessing is built (:meth:`NetworkInfo.eval_transform`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from torch import nn

from mobilenets.catalog import MIN_INPUT_SIZE
from mobilenets.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from mobilenets.errors import WeightsError, display
from mobilenets.models.registry import create_model, list_models, model_arguments

MAX_INPUT_SIZE = 4096
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
#: Fields kept as plain text in safetensors metadata; the others are JSON.
_TEXT_FIELDS = ("model", "source", "license", "data")


@dataclass(frozen=True)
class NetworkInfo:
    """A saved network: how to rebuild it and how to feed it.

    Args:
        model: registry name (``mobilenet_v2``).
        kwargs: constructor keywords for :func:`~mobilenets.models.create_model`.
        input_size: the square input the network was trained or evaluated at.
        mean, std: per-channel normalization.
        resize: short side before the center crop at evaluation (``None``: input / 0.875).
        interpolation: of that resize.
        classes: class names, one per classifier output (empty when unknown).
        source: where the weights come from.
        license: the weights' licence note, when known.
        data: the data spec the network was trained on (evaluation's default).
    """

    model: str
    kwargs: dict = field(default_factory=dict)
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize: int | None = None
    interpolation: str = "bilinear"
    classes: tuple[str, ...] = ()
    source: str = ""
    license: str = ""
    data: str = ""  # the data spec it was trained on ("digits", a folder, "imagenet")

    def __post_init__(self) -> None:
        try:
            json.dumps(self.kwargs)
        except TypeError:
            raise WeightsError(
                f"{self.model} keywords {self.kwargs} cannot be recorded with saved weights "
                "(a callable such as norm_layer is not data); save the state dict instead"
            ) from None

    @property
    def num_classes(self) -> int:
        return int(self.kwargs.get("num_classes", 1000))

    def build(self) -> nn.Module:
        """A fresh network of this architecture (random weights)."""
        return create_model(self.model, **self.kwargs)

    def eval_transform(self) -> object:
        """The evaluation preprocessing: resize, center crop, to float, normalize."""
        return eval_transform(self.input_size, self.mean, self.std, self.resize, self.interpolation)

    def pretrained_cfg(self) -> dict[str, object]:
        """timm's ``pretrained_cfg`` for this network (``resolve_data_config`` reads it)."""
        resize = self.resize or round(self.input_size / 0.875)
        return {
            "architecture": self.model,
            "input_size": (self.kwargs.get("in_chans", 3), self.input_size, self.input_size),
            "interpolation": self.interpolation,
            "crop_pct": self.input_size / resize,
            "crop_mode": "center",
            "mean": self.mean,
            "std": self.std,
            "num_classes": self.num_classes,
            "label_names": self.classes,
            "source": self.source,
            "license": self.license,
        }

    def with_classes(self, classes: list[str] | tuple[str, ...]) -> NetworkInfo:
        kwargs = {**self.kwargs, "num_classes": len(classes)}
        return replace(self, kwargs=kwargs, classes=tuple(classes))

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.update(mean=list(self.mean), std=list(self.std), classes=list(self.classes))
        return data

    def to_metadata(self) -> dict[str, str]:
        """String-to-string metadata (safetensors, ONNX): text fields as is, others as JSON."""
        return {
            key: value if key in _TEXT_FIELDS else json.dumps(value)
            for key, value in self.to_dict().items()
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str], where: str | Path) -> NetworkInfo:
        """Decode and validate string metadata written by :meth:`to_metadata`."""
        decoded: dict[str, object] = {}
        for key, text in meta.items():
            if key not in _FIELDS:
                continue
            if key in _TEXT_FIELDS:
                decoded[key] = text
                continue
            try:
                decoded[key] = json.loads(text)
            except ValueError:
                raise WeightsError(
                    f"{display(where)}: metadata {key!r} is not valid JSON: {display(text)[:80]}"
                ) from None
        return cls.from_dict(decoded, where)

    @classmethod
    def from_dict(cls, data: dict[str, object], where: str | Path) -> NetworkInfo:
        """Build from decoded metadata, checking every field (unknown keys are ignored)."""
        where = display(where)

        def bad(key: str, allowed: str) -> WeightsError:
            value = display(repr(data.get(key)))
            return WeightsError(f"{where}: metadata {key!r} is {value[:80]}; expected {allowed}")

        for key in ("model", "kwargs", "input_size", "mean", "std", "classes"):
            if key not in data:
                raise WeightsError(f"{where}: metadata has no {key!r} entry")
        name = data["model"]
        if not isinstance(name, str) or name not in list_models():
            raise bad("model", f"a registered model name ({', '.join(list_models())})")
        kwargs = data["kwargs"]
        if not isinstance(kwargs, dict):
            raise bad("kwargs", "a JSON object of constructor keywords")
        allowed = model_arguments(name)
        unknown = [k for k in kwargs if k not in allowed]
        if unknown:
            raise WeightsError(
                f"{where}: metadata keywords {[display(k) for k in unknown]} are not arguments "
                f"of {name}; allowed: {', '.join(allowed)}"
            )
        size = data["input_size"]
        if isinstance(size, str) and size.isdigit():
            size = int(size)
        if not _integer(size) or not MIN_INPUT_SIZE <= size <= MAX_INPUT_SIZE:
            raise bad("input_size", f"an integer in [{MIN_INPUT_SIZE}, {MAX_INPUT_SIZE}]")
        in_chans = kwargs.get("in_chans", 3)
        if not _integer(in_chans) or in_chans < 1:
            raise bad("kwargs", "in_chans a positive integer")
        norms = {}
        for key in ("mean", "std"):
            values = data[key]
            if (
                not isinstance(values, list | tuple)
                or len(values) != in_chans
                or not all(_finite(v) for v in values)
                or (key == "std" and not all(v > 0 for v in values))
            ):
                positive = " > 0" if key == "std" else ""
                raise bad(key, f"a list of {in_chans} finite numbers{positive} (one per channel)")
            norms[key] = tuple(float(v) for v in values)
        classes = data["classes"]
        if not isinstance(classes, list | tuple) or not all(isinstance(c, str) for c in classes):
            raise bad("classes", "a list of class-name strings")
        num_classes = kwargs.get("num_classes", 1000)
        if classes and len(classes) != num_classes:
            raise WeightsError(
                f"{where}: metadata names {len(classes)} classes but the classifier has "
                f"{num_classes} outputs"
            )
        resize = data.get("resize")
        largest = 2 * MAX_INPUT_SIZE
        if resize is not None and (not _integer(resize) or not size <= resize <= largest):
            raise bad("resize", f"null or an integer in [{size}, {2 * MAX_INPUT_SIZE}]")
        interpolation = data.get("interpolation", "bilinear")
        if interpolation not in INTERPOLATIONS:
            raise bad("interpolation", f"one of {INTERPOLATIONS}")
        text = {}
        for key in ("source", "license", "data"):
            text[key] = data.get(key, "")
            if not isinstance(text[key], str):
                raise bad(key, "text")
        return cls(
            name,
            kwargs,
            size,
            norms["mean"],
            norms["std"],
            resize,
            interpolation,
            tuple(classes),
            text["source"],
            text["license"],
            text["data"],
        )


_FIELDS = {f for f in NetworkInfo.__dataclass_fields__}


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
