"""Where the time goes: per-layer wall time on this machine, beside the mult-adds share.

The V1 paper (Section 3) says its 1×1 convolutions take 95% of the computation time as well as
94.86% of the mult-adds (Table 2); this measures that claim on real hardware. Forward hooks time
every leaf layer of an eager PyTorch forward (batch 1 by default); each figure is a median over
``runs`` forwards after ``warmup``. Hooks add a few microseconds per layer, so the sum of layer
times exceeds a plain forward slightly; both are reported.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mobilenets.complexity.counter import Profile, layer_kind, profile
from mobilenets.layers import SqueezeExcite


@dataclass
class LayerTime:
    name: str
    kind: str
    ms: float
    macs: int


@dataclass
class LatencyProfile:
    model_name: str
    resolution: int
    layers: list[LayerTime]
    forward_ms: float  # a plain forward without hooks
    profile: Profile

    @property
    def layers_ms(self) -> float:
        return sum(layer.ms for layer in self.layers)

    def by_kind(self) -> dict[str, tuple[float, float, float]]:
        """Per kind: (ms, % of layer time, % of mult-adds)."""
        ms: dict[str, float] = defaultdict(float)
        macs: dict[str, int] = defaultdict(int)
        for layer in self.layers:
            ms[layer.kind] += layer.ms
            macs[layer.kind] += layer.macs
        total_ms, total_macs = self.layers_ms, max(1, sum(macs.values()))
        return {k: (ms[k], 100 * ms[k] / total_ms, 100 * macs[k] / total_macs) for k in ms}

    def format(self, top: int = 10) -> str:
        lines = [
            f"{self.model_name} at {self.resolution} px, batch 1: forward {self.forward_ms:.2f} ms "
            f"(layers with hooks {self.layers_ms:.2f} ms), {torch.get_num_threads()} threads",
            f"{'kind':<8} {'ms':>8} {'% time':>8} {'% mult-adds':>12}",
        ]
        for kind, (ms, share, macs) in sorted(self.by_kind().items(), key=lambda kv: -kv[1][0]):
            lines.append(f"{kind:<8} {ms:>8.3f} {share:>8.2f} {macs:>12.2f}")
        lines += [
            "",
            f"slowest {top} layers",
            f"{'layer':<34} {'kind':<8} {'ms':>8} {'M mult-adds':>12} {'GMAC/s':>8}",
        ]
        for layer in sorted(self.layers, key=lambda t: -t.ms)[:top]:
            rate = layer.macs / layer.ms / 1e6 if layer.ms else 0.0
            lines.append(
                f"{layer.name:<34} {layer.kind:<8} {layer.ms:>8.3f} "
                f"{layer.macs / 1e6:>12.2f} {rate:>8.1f}"
            )
        return "\n".join(lines)


def time_calls(fn: Callable[[], object], warmup: int, runs: int) -> list[float]:
    """Wall times (ms) of ``runs`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return times


def time_interleaved(
    calls: dict[object, Callable[[], object]], warmup: int, runs: int
) -> dict[object, list[float]]:
    """Wall times (ms) of every call in ``calls``, interleaved so that load on the machine falls
    on all alike: ``warmup`` untimed rounds, then ``runs`` rounds, each visiting the calls in an
    order rotated by one, each timed call right after an untimed one of the same call (so it
    finds its own weights and code in the caches, as a call in a loop does)."""
    keys = list(calls)
    for _ in range(warmup):
        for key in keys:
            calls[key]()
    times: dict[object, list[float]] = {key: [] for key in keys}
    for round_ in range(runs):
        for key in keys[round_ % len(keys) :] + keys[: round_ % len(keys)]:
            calls[key]()
            start = time.perf_counter()
            calls[key]()
            times[key].append(1000 * (time.perf_counter() - start))
    return times


#: A timing whose 10th–90th percentile range exceeds this share of its median is flagged
#: (``bench``'s rows, the sweep's cells): the machine was busy while it was measured.
WIDE_SPREAD = 0.25


def is_wide(median: float, p10: float, p90: float) -> bool:
    """Whether a timing's p10–p90 range exceeds :data:`WIDE_SPREAD` of its median."""
    return p90 - p10 > WIDE_SPREAD * median


def spread(times: Sequence[float]) -> tuple[float, float, float]:
    """Median, 10th and 90th percentile."""
    deciles = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else []
    low, high = (deciles[0], deciles[-1]) if deciles else (times[0], times[0])
    return statistics.median(times), low, high


@torch.inference_mode()
def layer_latency(
    model: nn.Module, resolution: int = 224, *, runs: int = 20, warmup: int = 3
) -> LatencyProfile:
    """Median wall time of every leaf layer of ``model`` (eval mode, batch 1, NCHW)."""
    model.eval()
    prof = profile(model, resolution)
    macs = {row.name: row.macs for row in prof.rows}
    se_names = {n for n, m in model.named_modules() if isinstance(m, SqueezeExcite)}
    timings: dict[str, list[float]] = defaultdict(list)
    starts: dict[str, float] = {}
    kinds: dict[str, str] = {}
    handles = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue
        kind = layer_kind(module, any(name.startswith(s + ".") for s in se_names))
        if kind is None:
            continue
        kinds[name] = kind

        def before(_m, _i, name=name):
            starts[name] = time.perf_counter()

        def after(_m, _i, _o, name=name):
            timings[name].append(1000 * (time.perf_counter() - starts[name]))

        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    x = torch.randn(1, getattr(model, "in_chans", 3), resolution, resolution)
    plain = time_calls(lambda: model(x), warmup, runs)  # before and after the hooked runs
    try:
        for _ in range(warmup):
            model(x)
        timings.clear()
        for _ in range(runs):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    plain += time_calls(lambda: model(x), 0, runs)
    layers = [
        LayerTime(n, kinds[n], statistics.median(t) * len(t) / runs, macs.get(n, 0))
        for n, t in timings.items()
    ]
    return LatencyProfile(
        getattr(model, "model_name", type(model).__name__),
        resolution,
        layers,
        statistics.median(plain),
        prof,
    )
