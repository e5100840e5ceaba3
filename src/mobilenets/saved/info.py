"""``NetworkInfo``: the one record of what a saved network is and how to feed it.

The same record is written into a training checkpoint, into safetensors metadata and into ONNX
metadata, and read back (and validated: a file's metadata is data, not trust) by the same code.
It is the only place evaluation preprocessing is built (:meth:`NetworkInfo.eval_transform`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from torch import nn

from mobilenets.catalog import MIN_INPUT_SIZE
from mobilenets.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from mobilenets.errors import ConfigError, WeightsError, display
from mobilenets.models.registry import (
    check_bounds,
    create_model,
    list_models,
    model_arguments,
    model_task,
)
from mobilenets.schema import Finite, Positive, Text, validate

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

    @property
    def task(self) -> str:
        """What the network does (``classification``, ``segmentation``): its registry entry's."""
        return model_task(self.model)

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
        """Build from decoded metadata: each field's type and range by :class:`InfoRecord`, then
        what ties the fields together (unknown keys are ignored: formats add their own)."""
        if isinstance(data, dict) and isinstance(data.get("input_size"), str):
            text = data["input_size"]  # written as text by early versions; a number int() takes
            number = text.isdecimal() and len(text) < 10
            data = {**data, "input_size": int(text) if number else text}
        record = validate(data, InfoRecord, f"{display(where)}: metadata", WeightsError)
        where = display(where)
        name, kwargs = record.model, record.kwargs
        if name not in list_models():
            raise WeightsError(
                f"{where}: metadata 'model' is {display(repr(name))[:80]}; expected a registered "
                f"model name ({', '.join(list_models())})"
            )
        allowed = model_arguments(name)
        unknown = [k for k in kwargs if k not in allowed]
        if unknown:
            raise WeightsError(
                f"{where}: metadata keywords {[display(k) for k in unknown]} are not arguments "
                f"of {name}; allowed: {', '.join(allowed)}"
            )
        try:
            check_bounds(name, kwargs)  # a hostile number is refused before anything is built
        except ConfigError as err:
            raise WeightsError(f"{where}: metadata does not build a network: {err}") from None
        in_chans = kwargs.get("in_chans", 3)
        for key in ("mean", "std"):
            values = getattr(record, key)
            if len(values) != in_chans:
                raise WeightsError(
                    f"{where}: metadata {key!r} is {display(repr(values))[:80]}; expected a list "
                    f"of {in_chans} finite numbers{' > 0' if key == 'std' else ''} (one per "
                    "channel)"
                )
        num_classes = kwargs.get("num_classes", 1000)
        if record.classes and len(record.classes) != num_classes:
            raise WeightsError(
                f"{where}: metadata names {len(record.classes)} classes but the classifier has "
                f"{num_classes} outputs"
            )
        if record.resize is not None and record.resize < record.input_size:
            raise WeightsError(
                f"{where}: metadata 'resize' is {record.resize}; expected null or at least the "
                f"input size {record.input_size}"
            )
        return cls(
            name,
            kwargs,
            record.input_size,
            tuple(record.mean),
            tuple(record.std),
            record.resize,
            record.interpolation,
            tuple(record.classes),
            record.source,
            record.license,
            record.data,
        )


class InfoRecord(msgspec.Struct):
    """The schema of a :class:`NetworkInfo` as stored (unknown keys are ignored)."""

    model: Text
    kwargs: dict[Text, object]
    input_size: Annotated[int, msgspec.Meta(ge=MIN_INPUT_SIZE, le=MAX_INPUT_SIZE)]
    mean: Annotated[list[Finite], msgspec.Meta(min_length=1, max_length=1024)]
    std: Annotated[list[Positive], msgspec.Meta(min_length=1, max_length=1024)]
    classes: Annotated[list[Text], msgspec.Meta(max_length=1_000_000)]
    resize: Annotated[int, msgspec.Meta(ge=1, le=2 * MAX_INPUT_SIZE)] | None = None
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    source: Text = ""
    license: Text = ""
    data: Text = ""


_FIELDS = {f for f in NetworkInfo.__dataclass_fields__}
