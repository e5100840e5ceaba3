"""Converters from torchvision's and timm's MobileNet state dicts to ours.

Tensors are paired by name, never by position: :func:`key_map` derives, from our network's own
structure, the source's module path for each of our modules (torchvision's ``features.<i>...``,
timm's ``blocks.<stage>.<index>...``). The source must hold exactly those keys, each with our
shape and a floating dtype (timm's 1×1 ``conv_head`` becomes our ``Linear``); anything else is
refused with the keys and shapes at fault, never half-loaded. A state dict saved as safetensors
(keys sorted) converts exactly like the ``.pth`` of the same weights.

The architectural options each source needs are set on our model: torchvision V3 scales every
channel (``channel_rules="torchvision"``) with BN eps 1e-3; timm keeps the V3 stem and head
(``channel_rules="timm"``), uses BN eps 1e-5, and ReLU6 in V1.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mobilenets.errors import ConfigError, WeightsError, display, listed
from mobilenets.fileio import file_sha256, nonfinite_tensors, require_file
from mobilenets.layers import ConvNormAct, SqueezeExcite
from mobilenets.models.mobilenet_v1 import V1_TABLE_1
from mobilenets.models.mobilenet_v2 import V2_TABLE_2
from mobilenets.models.mobilenet_v3 import V3_LARGE_TABLE_1, V3_SMALL_TABLE_2
from mobilenets.models.registry import create_model, get_model_entry
from mobilenets.saved.info import NetworkInfo
from mobilenets.saved.safetensors import save_weights

TORCHVISION_MODELS = (
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "lraspp_mobilenet_v3_large",
    "deeplabv3_mobilenet_v3_large",
    "ssdlite320_mobilenet_v3_large",
)
#: torchvision's detector names → ours.
_TORCHVISION_DETECTORS = {"ssdlite320_mobilenet_v3_large": "ssdlite_mobilenet_v3_large"}
#: torchvision's segmenters: the classifier key each one's class count is read from.
_TORCHVISION_SEGMENTERS = {
    "lraspp_mobilenet_v3_large": "classifier.low_classifier.weight",
    "deeplabv3_mobilenet_v3_large": "classifier.4.weight",
}
_TIMM_NAME = re.compile(
    r"^(?P<tf>tf_)?mobilenetv(?P<family>1|2|3_large|3_small)(?P<minimal>_minimal)?_(?P<w>\d{3})$"
)


@dataclass(frozen=True)
class Target:
    """Our registry name and keywords for a source model."""

    model: str
    kwargs: dict
    source: str = "torchvision"


def torchvision_target(
    name: str,
    width_mult: float = 1.0,
    num_classes: int = 1000,
    reduced_tail: bool = False,
    aux_loss: bool = False,
) -> Target:
    """Our equivalent of ``torchvision.models.<name>(width_mult=..., ...)`` (or of
    ``torchvision.models.segmentation.<name>(num_classes=..., aux_loss=...)``)."""
    if name not in TORCHVISION_MODELS:
        raise ConfigError(
            f"torchvision has no MobileNet named {name!r}; supported: "
            f"{', '.join(TORCHVISION_MODELS)} (torchvision has no MobileNetV1)"
        )
    kwargs: dict = {"width_mult": width_mult, "num_classes": num_classes}
    if name in _TORCHVISION_DETECTORS:  # its anchors, and V3-Large as torchvision rounds it
        kwargs.update(
            anchors="torchvision",
            reduced_tail=reduced_tail,
            backbone_kwargs={"channel_rules": "torchvision"},
        )
        return Target(_TORCHVISION_DETECTORS[name], kwargs, "torchvision")
    if name in _TORCHVISION_SEGMENTERS:  # its backbone: torchvision's V3-Large, atrous
        kwargs["backbone_kwargs"] = {"channel_rules": "torchvision"}
        if aux_loss:
            kwargs["aux_loss"] = True
        if reduced_tail:
            kwargs["reduced_tail"] = True
    elif name.startswith("mobilenet_v3"):
        kwargs.update(channel_rules="torchvision", bn_eps=1e-3, reduced_tail=reduced_tail)
    return Target(name, kwargs, "torchvision")


def timm_target(name: str, num_classes: int = 1000) -> Target:
    """Our equivalent of ``timm.create_model(name)`` for timm's MobileNet V1/V2/V3 names."""
    match = _TIMM_NAME.match(name)
    if not match:
        raise ConfigError(
            f"cannot convert timm model {name!r}: supported are mobilenetv1_NNN, mobilenetv2_NNN, "
            "mobilenetv3_large_NNN and mobilenetv3_small_NNN (NNN = 100·α); timm's variants "
            "with other block layouts (mobilenetv1_100h, mobilenetv2_110d, mobilenetv3_rw, ...) "
            "are not the papers' networks"
        )
    if match["tf"] and not match["family"].startswith("3"):
        raise ConfigError(
            f"timm has no model {name!r}: its tf_ ports (TensorFlow's 'same' padding, BN eps "
            "1e-3) are tf_mobilenetv3_large_NNN, tf_mobilenetv3_small_NNN and their _minimal_"
        )
    width = int(match["w"]) / 100
    family = match["family"]
    kwargs: dict = {"width_mult": width, "num_classes": num_classes, "bn_eps": 1e-5}
    if family == "1":
        return Target("mobilenet_v1", {**kwargs, "act": "relu6"}, "timm")
    if family == "2":
        return Target("mobilenet_v2", kwargs, "timm")
    kwargs.update(channel_rules="timm", minimalistic=bool(match["minimal"]))
    if match["tf"]:  # the ports of TensorFlow's checkpoints: TF's padding and BN epsilon
        kwargs.update(padding="tf_same", bn_eps=1e-3)
    return Target(f"mobilenet_{family.replace('3', 'v3')}", kwargs, "timm")


#: The widths Keras applications offer weights for, tried in turn when a file does not say.
KERAS_WIDTHS = {
    "mobilenet_v1": (1.0, 0.75, 0.5, 0.25),
    "mobilenet_v2": (1.0, 0.75, 0.5, 0.35, 1.3, 1.4),
    "mobilenet_v3_large": (1.0, 0.75),
    "mobilenet_v3_small": (1.0, 0.75),
}


def keras_target(
    model: str, width_mult: float = 1.0, num_classes: int = 1000, minimalistic: bool = False
) -> Target:
    """Our equivalent of Keras applications' ``MobileNet``, ``MobileNetV2``,
    ``MobileNetV3Large``/``Small(alpha=..., minimalistic=...)``: TensorFlow's padding, BN eps
    1e-3, and Keras's own channel rounding (V1 ``int(c·α)``, V3's fixed 16-channel stem)."""
    kwargs: dict = {"width_mult": width_mult, "num_classes": num_classes, "bn_eps": 1e-3}
    if model == "mobilenet_v1":
        kwargs.update(act="relu6", channel_rules="keras", padding="keras")
    elif model == "mobilenet_v2":
        kwargs.update(padding="tf_same")
    elif model in ("mobilenet_v3_large", "mobilenet_v3_small"):
        kwargs.update(channel_rules="keras", padding="tf_same", minimalistic=minimalistic)
    else:
        raise ConfigError(
            f"Keras applications have no {model!r}; they have {', '.join(KERAS_WIDTHS)}"
        )
    return Target(model, kwargs, "keras")


# --- key maps: our module path -> the source's, by name (never by position) -----------------

_LEAF = re.compile(r"blocks\.(?P<i>\d+)\.(?:(?P<part>\w+)\.)?(?P<leaf>conv|bn|fc1|fc2)$")
_TIMM_BLOCK_LEAVES = {  # (block kind, our part.leaf) -> timm's name inside the block
    "ds": {
        "depthwise.conv": "conv_dw",
        "depthwise.bn": "bn1",
        "pointwise.conv": "conv_pw",
        "pointwise.bn": "bn2",
        "project.conv": "conv_pw",
        "project.bn": "bn2",
    },
    "ir": {
        "expand.conv": "conv_pw",
        "expand.bn": "bn1",
        "depthwise.conv": "conv_dw",
        "depthwise.bn": "bn2",
        "project.conv": "conv_pwl",
        "project.bn": "bn3",
    },
    "cn": {"conv": "conv", "bn": "bn1"},
}
_TIMM_SE = {"fc1": "conv_reduce", "fc2": "conv_expand"}
_BLOCK_PARTS = ("expand", "depthwise", "pointwise", "se", "project")


@dataclass(frozen=True)
class _Layout:
    """What the key maps need to know of our network: the parts of each block, in order."""

    family: str  # v1 | v2 | v3
    parts: list[list[str]]  # per block: e.g. ["expand", "depthwise", "se", "project"] or []
    stages: list[int]  # timm: blocks per stage (the rows of the paper's table with one width)

    @classmethod
    def of(cls, model: nn.Module) -> _Layout:
        family = model.model_name.removeprefix("mobilenet_")[:2]
        parts = [
            [
                p
                for p in _BLOCK_PARTS
                if isinstance(getattr(block, p, None), ConvNormAct | SqueezeExcite)
            ]
            for block in model.blocks
        ]
        return cls(family, parts, _timm_stages(model.model_name))


def _timm_stages(name: str) -> list[int]:
    """timm groups blocks by the paper table's output width: V1's and V3's runs of one ``c``,
    V2's ``(t, c, n, s)`` rows; V3's last 1×1 conv is a stage of its own."""
    if name == "mobilenet_v2":
        return [row.n for row in V2_TABLE_2]
    if name == "mobilenet_v1":
        widths = [row.c for row in V1_TABLE_1]
    else:
        widths = [row.out for row in (V3_LARGE_TABLE_1 if "large" in name else V3_SMALL_TABLE_2)]
    runs = [len(list(group)) for _, group in itertools.groupby(widths)]
    return [*runs, 1] if name.startswith("mobilenet_v3") else runs


def _torchvision_module(name: str, layout: _Layout) -> str:
    """torchvision's module path for one of our leaf modules (``features.*``, ``classifier.*``)."""
    fixed = {"stem.conv": "features.0.0", "stem.bn": "features.0.1"}
    last = len(layout.parts) + (1 if layout.family == "v2" else 0)
    fixed |= {"head.conv": f"features.{last}.0", "head.bn": f"features.{last}.1"}
    if layout.family == "v3":
        fixed |= {"pre_logits.0": "classifier.0", "classifier": "classifier.3"}
    else:
        fixed |= {"classifier": "classifier.1"}
    if name in fixed:
        return fixed[name]
    match = _LEAF.match(name)
    if not match:
        raise WeightsError(f"no torchvision name for our module {name!r}")
    i, part, leaf = int(match["i"]), match["part"], match["leaf"]
    if part is None:  # V3's last 1×1 conv, a block of its own
        return f"features.{i + 1}.{0 if leaf == 'conv' else 1}"
    j = layout.parts[i].index(part)
    if layout.family == "v2":
        if part == "project":  # torchvision V2: a bare conv and BN, not a Conv2dNormActivation
            return f"features.{i + 1}.conv.{j + (leaf == 'bn')}"
        return f"features.{i + 1}.conv.{j}.{0 if leaf == 'conv' else 1}"
    if part == "se":
        return f"features.{i + 1}.block.{j}.{leaf}"
    return f"features.{i + 1}.block.{j}.{0 if leaf == 'conv' else 1}"


def _timm_module(name: str, layout: _Layout) -> str:
    """timm's module path (``conv_stem``, ``blocks.<stage>.<index>.*``, ``conv_head``, ...)."""
    fixed = {
        "stem.conv": "conv_stem",
        "stem.bn": "bn1",
        "head.conv": "conv_head",
        "head.bn": "bn2",
        "pre_logits.0": "conv_head",
        "classifier": "classifier",
    }
    if name in fixed:
        return fixed[name]
    match = _LEAF.match(name)
    if not match:
        raise WeightsError(f"no timm name for our module {name!r}")
    i, part, leaf = int(match["i"]), match["part"], match["leaf"]
    stage = next(s for s in range(len(layout.stages)) if i < sum(layout.stages[: s + 1]))
    prefix = f"blocks.{stage}.{i - sum(layout.stages[:stage])}"
    if part is None:
        return f"{prefix}.{_TIMM_BLOCK_LEAVES['cn'][leaf]}"
    if part == "se":
        return f"{prefix}.se.{_TIMM_SE[leaf]}"
    kind = "ir" if "expand" in layout.parts[i] else "ds"
    return f"{prefix}.{_TIMM_BLOCK_LEAVES[kind][f'{part}.{leaf}']}"


def _keras_module(name: str, layout: _Layout) -> str:
    """Keras applications' layer name (``conv_dw_3_bn``, ``block_5_project``,
    ``expanded_conv_7_squeeze_excite_conv_1``, ...)."""
    fixed = {
        "v1": {"stem.conv": "conv1", "stem.bn": "conv1_bn", "classifier": "conv_preds"},
        "v2": {
            "stem.conv": "Conv1",
            "stem.bn": "bn_Conv1",
            "head.conv": "Conv_1",
            "head.bn": "Conv_1_bn",
            "classifier": "predictions",
        },
        "v3": {
            "stem.conv": "conv",
            "stem.bn": "conv_bn",
            "pre_logits.0": "conv_2",
            "classifier": "logits",
        },
    }[layout.family]
    if name in fixed:
        return fixed[name]
    match = _LEAF.match(name)
    if not match:
        raise WeightsError(f"no Keras name for our module {name!r}")
    i, part, leaf = int(match["i"]), match["part"], match["leaf"]
    if layout.family == "v1":
        kind = {"depthwise": "dw", "pointwise": "pw"}[part]
        return f"conv_{kind}_{i + 1}" + ("_bn" if leaf == "bn" else "")
    if layout.family == "v2":
        prefix = "expanded_conv_" if i == 0 else f"block_{i}_"
        return f"{prefix}{part}" + ("_BN" if leaf == "bn" else "")
    if part is None:  # V3's last 1×1 conv
        return "conv_1" + ("_bn" if leaf == "bn" else "")
    prefix = "expanded_conv_" if i == 0 else f"expanded_conv_{i}_"
    if part == "se":
        return f"{prefix}squeeze_excite_conv" + ("_1" if leaf == "fc2" else "")
    return f"{prefix}{part}" + ("_bn" if leaf == "bn" else "")


_SOURCE_MODULE = {"torchvision": _torchvision_module, "timm": _timm_module, "keras": _keras_module}
_SOURCE_LOOKS = {
    "torchvision": "features.0.0.weight",
    "timm": "conv_stem.weight",
    "checkpoint": "stem.conv.weight",  # ours: a mobilenets checkpoint or weights file
}


def key_map(source_name: str, model: nn.Module) -> dict[str, str]:
    """Our state-dict key -> the source's key, by module path (``source_name``: torchvision or
    timm). Derived from our network's own structure, so it holds for every width and variant.

    A segmenter's heads carry torchvision's names already; its backbone maps as the family's
    ``features`` does, under torchvision's ``backbone.`` (``IntermediateLayerGetter``)."""
    if getattr(model, "task", "") == "detection":
        if source_name != "torchvision":
            raise WeightsError(f"{source_name} has no detection models to convert")
        return _detector_key_map(model)
    if hasattr(model, "backbone"):
        if source_name != "torchvision":
            raise WeightsError(f"{source_name} has no segmentation models to convert")
        inner = key_map(source_name, model.backbone)
        mapping = {
            f"backbone.{k}": "backbone." + v.removeprefix("features.") for k, v in inner.items()
        }
        for key in model.state_dict():
            mapping.setdefault(key, key)
        return mapping
    layout = _Layout.of(model)
    module_name = _SOURCE_MODULE[source_name]
    mapping = {}
    for key in model.state_dict():
        module, _, tensor = key.rpartition(".")
        mapping[key] = f"{module_name(module, layout)}.{tensor}"
    return mapping


def _detector_key_map(model: nn.Module) -> dict[str, str]:
    """Our SSDLite's keys → torchvision's ``ssdlite320_mobilenet_v3_large``'s. torchvision cuts
    the V3 ``features`` at C4: ``backbone.features.0`` holds the layers before the C4 block and
    its expansion, ``backbone.features.1`` the rest of that block (``.0``, the block's own
    indices kept) and the layers after it; its Conv2dNormActivation children are ``0``/``1``
    where ours are ``conv``/``bn``."""
    features = model.backbone
    view = nn.Module()  # the family's classifier layout, for the family's key map
    view.stem, view.blocks, view.head = features.stem, features.blocks, features.head
    view.model_name = model.backbone_name
    c4 = features.tap + 1  # torchvision's index of the C4 block in ``features``
    mapping = {}
    for ours, theirs in key_map("torchvision", view).items():
        index, rest = theirs.removeprefix("features.").split(".", 1)
        index = int(index)
        if index < c4:
            theirs = f"features.0.{index}.{rest}"
        elif index == c4:
            part, rest = rest.removeprefix("block.").split(".", 1)
            theirs = f"features.0.{c4}.{rest}" if part == "0" else f"features.1.0.{part}.{rest}"
        else:
            theirs = f"features.1.{index - c4}.{rest}"
        mapping[f"backbone.{ours}"] = f"backbone.{theirs}"
    for key in model.state_dict():
        if key not in mapping:  # extra layers and heads: torchvision's names, conv/bn as 0/1
            mapping[key] = key.replace(".conv.", ".0.").replace(".bn.", ".1.")
    return mapping


def check_key_map(
    source: dict[str, torch.Tensor], model: nn.Module, source_name: str
) -> dict[str, str]:
    """The key map, after checking that the source has exactly the mapped keys (BN's
    ``num_batches_tracked`` may be absent) and that every pair has the same shape and a
    floating dtype. Anything else is refused, naming the keys."""
    mapping = key_map(source_name, model)
    ours = model.state_dict()
    wanted = set(mapping.values())
    missing = [
        src
        for dst, src in mapping.items()
        if src not in source and not dst.endswith("num_batches_tracked")
    ]
    unexpected = [k for k in source if k not in wanted]
    what = f"{model.model_name} with {model.model_kwargs}"
    if missing or unexpected:
        guess = [n for n, k in _SOURCE_LOOKS.items() if k in source and n != source_name]
        hint = f" It looks like a {guess[0]} state dict: use --from {guess[0]}." if guess else ""
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys ({listed(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({listed(unexpected)})")
        raise WeightsError(
            f"the source is not a {source_name} state dict of {what}: "
            + "; ".join(parts)
            + "."
            + hint
        )
    problems = []
    for dst, src in mapping.items():
        if src not in source:
            continue
        a, b = source[src], ours[dst]
        if a.is_floating_point() != b.is_floating_point():
            problems.append(f"{src} has dtype {a.dtype}, ours {b.dtype}")
            continue
        same = (
            a.shape == b.shape
            or (  # timm's 1×1 conv_head is our Linear pre-logits
                a.dim() == 4 and b.dim() == 2 and a.shape[:2] == b.shape and a.shape[2:] == (1, 1)
            )
        )
        if not same:
            problems.append(f"{src} {tuple(a.shape)} vs our {dst} {tuple(b.shape)}")
    if problems:
        raise WeightsError(
            f"the source does not fit {what} (another architecture or width?): "
            + "; ".join(problems[:6])
            + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        )
    return mapping


def check_source_settings(model: nn.Module, target: Target) -> None:
    """The hyper-parameters a source implies are what our network was built with: BN epsilon
    (torchvision V3 1e-3, timm 1e-5) and V1's ReLU6 under timm."""
    eps = target.kwargs.get("bn_eps")
    wrong = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.BatchNorm2d) and eps is not None and m.eps != eps
    ]
    if wrong:
        raise WeightsError(f"BN epsilon of {listed(wrong)} is not the source's {eps}")
    if target.kwargs.get("act") == "relu6" and not any(
        isinstance(m, nn.ReLU6) for m in model.modules()
    ):
        raise WeightsError("the source uses ReLU6 but the target network does not")


def convert_state_dict(
    source: dict[str, torch.Tensor], target: Target, source_name: str | None = None
) -> nn.Module:
    """Build our network for ``target`` and load ``source`` into it, pairing tensors by name
    (:func:`check_key_map`); non-finite source weights are refused."""
    source_name = source_name or target.source
    model = create_model(target.model, **target.kwargs)
    check_source_settings(model, target)
    mapping = check_key_map(source, model, source_name)
    bad = nonfinite_tensors(source)
    if bad:
        raise WeightsError(f"the source holds NaN or inf in {listed(bad)}")
    ours = model.state_dict()
    converted = {
        dst: source[src].reshape(ours[dst].shape).to(ours[dst].dtype).clone()
        if src in source
        else ours[dst]
        for dst, src in mapping.items()
    }
    model.load_state_dict(converted, strict=True)
    return model.eval()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``/``.pt``/``.bin`` (``weights_only=True``) or ``.safetensors``."""
    path = require_file(path, "a state-dict file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = display(str(err).splitlines()[0] if str(err) else type(err).__name__)
        raise WeightsError(f"{display(path)} is truncated or not a state dict: {reason}") from err
    for wrapper in ("state_dict", "model", "state_dict_ema"):  # training checkpoints
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise WeightsError(f"{display(path)} does not hold a state dict of named tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def classifier_outputs(state: dict[str, torch.Tensor], source: str, model: str) -> int:
    """Number of classes of a source state dict, read from its classifier by name (1000 when
    there is none: the key-map check then names every key that does not fit)."""
    if source == "timm":
        key = "classifier.weight"
    elif model in _TORCHVISION_SEGMENTERS:
        key = _TORCHVISION_SEGMENTERS[model]
    else:
        key = "classifier.3.weight" if model.startswith("mobilenet_v3") else "classifier.1.weight"
    weight = state.get(key)
    if weight is not None and weight.dim() == 4 and weight.shape[2:] == (1, 1):  # a 1×1 conv
        return int(weight.shape[0])
    return int(weight.shape[0]) if weight is not None and weight.dim() == 2 else 1000


def default_classes(num_classes: int) -> list[str]:
    """ImageNet's class names for a 1,000-way classifier, else the indices as names."""
    return imagenet_classes() if num_classes == 1000 else [str(i) for i in range(num_classes)]


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet class names (shipped with torchvision, no download)."""
    from torchvision.models import MobileNet_V2_Weights

    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def torchvision_eval_resize(name: str, path: str | Path) -> int | None:
    """The eval resize torchvision publishes for one of its weights files, recognised by the
    file name (232 for ``mobilenet_v2-7ebf99e0.pth``, ``IMAGENET1K_V2``), else ``None``."""
    from torchvision.models import get_model_weights

    try:
        entries = list(get_model_weights(name))
    except ValueError:
        return None
    for entry in entries:
        if Path(entry.url).name == Path(path).name:
            return int(entry.transforms().resize_size[0])
    return None


def convert_state_file(
    source: str,
    path: str | Path,
    out: str | Path,
    *,
    model: str,
    width_mult: float | None = None,
    reduced_tail: bool = False,
    eval_resize: int | None = None,
) -> NetworkInfo:
    """A torchvision or timm state dict file converted to our weights at ``out``, its record
    naming the source file and its sha256 (how the hub cache proves what it holds)."""
    state = read_state_dict(path)
    width_mult = width_mult or 1.0
    if source == "torchvision":
        torchvision_target(model)  # checks the name first
        num_classes = classifier_outputs(state, source, model)
        aux = any(k.startswith("aux_classifier.") for k in state)
        target = torchvision_target(model, width_mult, num_classes, reduced_tail, aux)
        eval_resize = eval_resize or torchvision_eval_resize(model, path)
    else:
        target = timm_target(model)  # checks the name before the state dict is read for it
        num_classes = classifier_outputs(state, source, target.model)
        target = timm_target(model, num_classes)
    net = convert_state_dict(state, target, source)
    info = NetworkInfo(
        target.model,
        target.kwargs,
        input_size=get_model_entry(target.model).input_size,
        resize=eval_resize,
        classes=tuple(default_classes(num_classes)),
        source=f"{source}:{model} ({Path(path).name}, sha256 {file_sha256(path)})",
    )
    save_weights(net, out, info)
    return info
