"""NetAdapt's latency model: a lookup table of per-layer latencies measured on this machine.

NetAdapt (Yang et al. 2018, Section 3.2; V3 paper, Section 5.2) predicts a candidate network's
latency as the sum of its layers' latencies, each measured once, alone, on the target platform,
and looked up afterwards, so that thousands of candidates cost no more measurements than their
distinct layers. Here a *layer* is one of a table's pieces at its input size (the stem, one
block, the head from the last 1×1 conv to the logits), built from the same modules as the
network (:mod:`mobilenets.layers`), BN folded, batch 1, timed on the chosen backend:

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
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import msgspec
import torch
from torch import nn

from mobilenets.complexity.latency import time_calls
from mobilenets.errors import ConfigError
from mobilenets.export.folding import fold_bn
from mobilenets.fileio import cache_dir, read_cache, write_cache
from mobilenets.layers import ConvNormAct, InvertedResidual, make_activation
from mobilenets.schema import Text

LUT_BACKENDS = ("eager", "ort")
#: Activation names per family: V2 uses ReLU6 everywhere, V3 the table's RE/HS.
V2_ACT = "relu6"


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
    """The layers of a table at ``resolution``, each a JSON-able spec with its input size."""
    out_key = "c" if family == "v2" else "out"
    stem_act = V2_ACT if family == "v2" else table["head_nl"]
    size = (resolution + 1) // 2  # the stride-2 stem
    specs = [{"kind": "stem", "cout": table["stem"], "act": stem_act, "hw": resolution}]
    cin = table["stem"]
    for row in table["rows"]:
        specs.append(
            {
                "kind": "block",
                "cin": cin,
                "exp": row["exp"],
                "cout": row[out_key],
                "k": row.get("k", 3),
                "s": row["s"],
                "se": row.get("se", False),
                "act": V2_ACT if family == "v2" else row["nl"],
                "hw": size,
            }
        )
        size = (size + 1) // 2 if row["s"] == 2 else size
        cin = row[out_key]
    last = [table["last"]] if family == "v2" else list(table["last"])
    head_act = V2_ACT if family == "v2" else table["head_nl"]
    specs.append(
        {"kind": "head", "cin": cin, "last": last, "act": head_act, "classes": num_classes,
         "hw": size}
    )  # fmt: skip
    return specs


def build_layer(spec: dict) -> tuple[nn.Module, torch.Tensor]:
    """The module a spec describes (BN folded, eval) and a batch-1 input for it."""
    kind = spec["kind"]
    if kind == "stem":
        module = ConvNormAct(3, spec["cout"], 3, 2, act=spec["act"])
        x = torch.randn(1, 3, spec["hw"], spec["hw"])
    elif kind == "block":
        module = InvertedResidual(
            spec["cin"], spec["exp"], spec["cout"], spec["k"], spec["s"], spec["act"], spec["se"]
        )
        x = torch.randn(1, spec["cin"], spec["hw"], spec["hw"])
    elif kind == "head":
        parts = [ConvNormAct(spec["cin"], spec["last"][0], 1, act=spec["act"])]
        parts += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
        if len(spec["last"]) == 2:  # V3: a pre-logits layer without BN
            parts += [nn.Linear(spec["last"][0], spec["last"][1]), make_activation(spec["act"])]
        parts.append(nn.Linear(spec["last"][-1], spec["classes"]))
        module = nn.Sequential(*parts)
        x = torch.randn(1, spec["cin"], spec["hw"], spec["hw"])
    else:
        raise ConfigError(f"unknown layer kind {kind!r}")
    return fold_bn(module), x


def backend_call(module: nn.Module, x: torch.Tensor, backend: str, threads: int) -> Callable:
    """A no-argument call running ``module`` on ``x`` with ``backend``."""
    if backend == "eager":

        def call() -> object:
            with torch.inference_mode():
                return module(x)

        return call
    from mobilenets.saved.onnx import OnnxSession

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "layer.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), str(path), input_names=["x"], dynamo=False)
        session = OnnxSession(path, threads)  # ORT's defaults as predict runs them
    array = x.numpy()
    return lambda: session(array)


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
            threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                call = backend_call(*build_layer(spec), self.backend, self.threads)
                times = time_calls(call, warmup=max(3, self.runs // 5), runs=self.runs)
            finally:
                torch.set_num_threads(threads)
            self.entries[key] = statistics.median(times)
            self.measured += 1
            write_cache(self.path, self.entries, self.key)
        return self.entries[key]

    def predict(self, specs: list[dict]) -> float:
        """NetAdapt's estimate of a network's latency: the sum of its layers'."""
        return sum(self.layer_ms(s) for s in specs)
