"""NetAdapt's latency model: a lookup table of per-layer latencies measured on this machine.

NetAdapt (Yang et al. 2018, Section 3.2; V3 paper, Section 5.2) predicts a candidate network's
latency as the sum of its layers' latencies, each measured once, alone, on the target platform,
and looked up afterwards, so that thousands of candidates cost no more measurements than their
distinct layers. Here a *layer* is one of a table's pieces at its input size (the stem, one
block, the head from the last 1×1 conv to the logits), built by the family's own pieces (the
``stem``, ``block`` and ``head`` functions its network is assembled from, so a change to a
family's block is timed as it is trained), BN folded, batch 1, timed on the chosen backend
through the runtime layer (:func:`mobilenets.export.runtimes.prepare`):

- ``eager``: the PyTorch module under ``inference_mode``;
- ``ort``: the layer exported to ONNX alone and run by ONNX Runtime.

The prediction is the plain sum, as in NetAdapt. Subtracting each layer's share of a per-call
cost and adding it once predicted half the measured time on ONNX Runtime (V3-Small, 64 px):
inside a whole network every layer still pays its own scheduling and layout reorders, so the
standalone times already hold what the network pays.

Figures are cached per (layer, backend, threads, versions, CPU) in
``$MOBILENETS_CACHE/latency_lut/`` and written atomically.
"""

from __future__ import annotations

import hashlib
import json
import platform
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import msgspec
import torch
from torch import nn

from mobilenets.complexity.latency import time_calls
from mobilenets.errors import ConfigError
from mobilenets.export.folding import fold_bn
from mobilenets.export.runtimes import prepare, torch_threads
from mobilenets.fileio import cache_dir, read_cache, write_cache
from mobilenets.models import mobilenet_v2, mobilenet_v3
from mobilenets.models.table import check_table
from mobilenets.schema import Text

LUT_BACKENDS = ("eager", "ort")
#: Each family's pieces (``stem``, ``block``, ``head``): its network and its latency table
#: are built by the same functions.
FAMILIES = {"v2": mobilenet_v2, "v3": mobilenet_v3}


def family_of(name: str) -> str:
    """ "v2" or "v3" for the model names NetAdapt takes (V1 has no blocks to cut)."""
    if name.startswith("mobilenet_v2"):
        return "v2"
    if name.startswith("mobilenet_v3"):
        return "v3"
    raise ConfigError(
        f"NetAdapt here adapts MobileNetV2 and V3 (inverted residual blocks); got {name!r}"
    )


def layer_specs(table: dict, family: str, resolution: int, num_classes: int) -> list[dict]:
    """The layers of a table at ``resolution``, each a JSON-able spec with its input size: the
    stem, each block (its table row), the head (the table's last layers and the classifier)."""
    table = check_table(table, family)  # rows in today's form (older V2 tables say "c")
    size = (resolution + 1) // 2  # the stride-2 stem
    ends = {k: table[k] for k in ("stem", "last", "head_nl") if k in table}
    specs = [{"kind": "stem", "family": family, "table": ends, "hw": resolution}]
    cin = table["stem"]
    for row in table["rows"]:
        specs.append({"kind": "block", "family": family, "row": row, "cin": cin, "hw": size})
        size = (size + 1) // 2 if row["s"] == 2 else size
        cin = row["out"]
    specs.append(
        {"kind": "head", "family": family, "table": ends, "cin": cin, "classes": num_classes,
         "hw": size}
    )  # fmt: skip
    return specs


def build_layer(spec: dict) -> tuple[nn.Module, torch.Tensor]:
    """The module a spec describes, built by its family's own pieces (the ones its network is
    assembled from), BN folded, eval, and a batch-1 input for it."""
    pieces = FAMILIES[spec["family"]]
    kind, hw = spec["kind"], spec["hw"]
    if kind == "stem":
        module, cin = pieces.stem(spec["table"]), 3
    elif kind == "block":
        module, cin = pieces.block(spec["row"], spec["cin"]), spec["cin"]
    elif kind == "head":
        last, pre_logits, features = pieces.head(spec["table"], spec["cin"])
        parts = [last, nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
        parts += [pre_logits] if pre_logits is not None else []
        module, cin = nn.Sequential(*parts, nn.Linear(features, spec["classes"])), spec["cin"]
    else:
        raise ConfigError(f"unknown layer kind {kind!r}")
    return fold_bn(module.eval()), torch.randn(1, cin, hw, hw)


def backend_call(module: nn.Module, x: torch.Tensor, backend: str, threads: int) -> Callable:
    """A no-argument call running ``module`` on ``x`` with ``backend`` (the runtime layer's
    :func:`~mobilenets.export.runtimes.prepare`; an ONNX export is made with static shapes in a
    temporary folder and held in memory by its session)."""
    with tempfile.TemporaryDirectory() as tmp:
        return prepare(module, backend, x, workdir=Path(tmp), threads=threads, dynamic_batch=False)


#: A layer's measured latency as read back from the cache: positive, finite and below a minute.
LayerMs = Annotated[float, msgspec.Meta(gt=0, le=60_000)]


class LatencyTable:
    """Per-layer latencies (ms) on one backend and thread count, measured on first use;
    ``predict(specs)`` is NetAdapt's estimate of a network."""

    def __init__(
        self, backend: str = "ort", threads: int = 1, runs: int = 30, folder: Path | None = None
    ) -> None:
        if backend not in LUT_BACKENDS:
            raise ConfigError(f"latency backend must be one of {LUT_BACKENDS}, got {backend!r}")
        self.backend, self.threads, self.runs = backend, threads, runs
        folder = folder or cache_dir() / "latency_lut"
        folder.mkdir(parents=True, exist_ok=True)
        self.key = f"{backend}-{threads}t-{self._platform_key()}"
        self.path = folder / f"{self.key}.json"
        self.entries: dict[str, float] = read_cache(self.path, dict[Text, LayerMs], self.key) or {}
        self.measured = 0  # layers measured by this instance (the rest came from the cache)

    def _platform_key(self) -> str:
        versions = [torch.__version__, platform.processor() or platform.machine()]
        if self.backend == "ort":
            import onnxruntime

            versions.append(onnxruntime.__version__)
        return hashlib.sha256(" ".join(versions).encode()).hexdigest()[:12]

    def layer_ms(self, spec: dict) -> float:
        """The median latency of one layer (cached)."""
        key = json.dumps(spec, sort_keys=True)
        if key not in self.entries:
            with torch_threads(self.threads):
                call = backend_call(*build_layer(spec), self.backend, self.threads)
                times = time_calls(call, warmup=max(3, self.runs // 5), runs=self.runs)
            self.entries[key] = statistics.median(times)
            self.measured += 1
            write_cache(self.path, self.entries, self.key)
        return self.entries[key]

    def predict(self, specs: list[dict]) -> float:
        """NetAdapt's estimate of a network's latency: the sum of its layers'."""
        return sum(self.layer_ms(s) for s in specs)
