"""Per-layer parameters and multiply-adds, counted with forward hooks on every leaf module.

Counting rules (the papers' convention, V1 Section 3):

- a k×k convolution with ``C_in/groups`` inputs per output, producing ``C_out × H × W``, costs
  ``k·k·(C_in/groups)·C_out·H·W`` mult-adds; a fully connected layer ``in·out``;
- BatchNorm, activations, pooling and dropout are listed with 0 mult-adds; the residual add and
  the SE gate's multiply are elementwise and not mult-adds (the papers do not count them);
- parameters are reported two ways: every trainable tensor (``sum(p.numel())``, what torchvision
  and timm print) and the papers' convention, conv and FC weights only (no bias, no BN).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from mobilenets.errors import ConfigError
from mobilenets.layers import DepthwiseSeparable, InvertedResidual, SqueezeExcite

ZERO_COST_KINDS = ("bn", "act", "pool", "dropout")
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid, nn.GELU)


@dataclass(frozen=True)
class LayerRow:
    """One leaf layer of the network as it ran on one image."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int  # every trainable tensor of this module
    paper_params: int  # conv/FC weights only
    macs: int


@dataclass(frozen=True)
class SeparableCost:
    """A depthwise k×k + pointwise 1×1 pair against one full k×k conv of the same shape.

    V1 paper, Eq. (5): cost ratio = 1/N + 1/D_K².
    """

    name: str
    in_channels: int
    out_channels: int
    kernel_size: int
    output_size: tuple[int, int]
    separable_macs: int
    full_conv_macs: int

    @property
    def ratio(self) -> float:
        return self.separable_macs / self.full_conv_macs

    @property
    def paper_ratio(self) -> float:
        return 1 / self.out_channels + 1 / self.kernel_size**2


@dataclass(frozen=True)
class KindTotals:
    count: int
    params: int
    paper_params: int
    macs: int


@dataclass
class Profile:
    """The complexity of one network at one input size (batch of one image)."""

    model_name: str
    input_shape: tuple[int, int, int]
    rows: list[LayerRow]
    total_params: int  # every trainable tensor
    separable: list[SeparableCost] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def paper_params(self) -> int:
        return sum(r.paper_params for r in self.rows)

    def by_kind(self) -> dict[str, KindTotals]:
        """Totals per layer kind, in order of first appearance."""
        acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for r in self.rows:
            a = acc[r.kind]
            a[0] += 1
            a[1] += r.params
            a[2] += r.paper_params
            a[3] += r.macs
        return {k: KindTotals(*v) for k, v in acc.items()}

    def shares(self) -> dict[str, tuple[float, float]]:
        """Per kind: (% of mult-adds, % of paper-convention parameters), as V1 Table 2."""
        macs, params = self.macs, self.paper_params
        return {
            k: (100 * t.macs / macs, 100 * t.paper_params / params)
            for k, t in self.by_kind().items()
            if k not in ZERO_COST_KINDS
        }

    def to_dict(self) -> dict:
        return {
            "model": self.model_name,
            "input_shape": list(self.input_shape),
            "macs": self.macs,
            "params": self.total_params,
            "paper_params": self.paper_params,
            "by_kind": {k: asdict(v) for k, v in self.by_kind().items()},
            "shares_percent": {
                k: {"macs": m, "paper_params": p} for k, (m, p) in self.shares().items()
            },
            "layers": [asdict(r) for r in self.rows],
            "separable": [
                {**asdict(s), "ratio": s.ratio, "paper_ratio": s.paper_ratio}
                for s in self.separable
            ],
        }

    def format(self, by: str = "layer") -> str:
        """A readable table, per ``layer`` or per ``kind``, with totals and the conventions."""
        if by not in ("layer", "kind"):
            raise ConfigError(f"by must be 'layer' or 'kind', got {by!r}")
        c, h, w = self.input_shape
        lines = [f"{self.model_name} at {h}×{w}×{c}"]
        if by == "layer":
            lines.append(
                f"{'layer':<34} {'kind':<8} {'output':<14} {'params':>10} {'mult-adds':>13}"
            )
            for r in self.rows:
                shape = "×".join(map(str, r.output_shape[1:]))
                lines.append(f"{r.name:<34} {r.kind:<8} {shape:<14} {r.params:>10,} {r.macs:>13,}")
        else:
            shares = self.shares()
            lines.append(
                f"{'kind':<8} {'layers':>6} {'params':>11} {'paper params':>13} "
                f"{'mult-adds':>13} {'% mult-adds':>11} {'% params':>9}"
            )
            for kind, t in self.by_kind().items():
                m, p = shares.get(kind, (0.0, 0.0))
                lines.append(
                    f"{kind:<8} {t.count:>6} {t.params:>11,} {t.paper_params:>13,} "
                    f"{t.macs:>13,} {m:>11.2f} {p:>9.2f}"
                )
        lines += [
            "",
            f"mult-adds: {self.macs:,} ({self.macs / 1e6:.1f} M)",
            f"params, every trainable tensor (torchvision/timm): {self.total_params:,}",
            f"params, paper convention (conv+FC weights, no bias/BN): {self.paper_params:,}",
            "bn, act, pool and dropout rows cost 0 mult-adds; residual adds and SE gate "
            "multiplies are elementwise and not counted, as in the papers.",
        ]
        if self.separable:
            lines += ["", "depthwise separable vs full conv (V1 Eq. 5: 1/N + 1/Dk²)"]
            lines.append(
                f"{'layer':<14} {'M→N':>11} {'k':>2} {'out':>7} {'separable':>12} "
                f"{'full conv':>13} {'ratio':>7} {'1/N+1/k²':>9}"
            )
            for s in self.separable:
                lines.append(
                    f"{s.name:<14} {f'{s.in_channels}→{s.out_channels}':>11} {s.kernel_size:>2} "
                    f"{f'{s.output_size[0]}×{s.output_size[1]}':>7} {s.separable_macs:>12,} "
                    f"{s.full_conv_macs:>13,} {s.ratio:>7.4f} {s.paper_ratio:>9.4f}"
                )
        return "\n".join(lines)


def layer_kind(module: nn.Module, in_se: bool = False) -> str | None:
    """The kind of a leaf module: conv3x3, conv_dw, conv1x1, fc, se, bn, act, pool, dropout."""
    if isinstance(module, nn.Conv2d):
        if in_se:
            return "se"
        kh, kw = module.kernel_size
        if module.groups > 1 and module.groups == module.in_channels:
            return "conv_dw"
        return f"conv{kh}x{kw}"
    if isinstance(module, nn.Linear):
        return "se" if in_se else "fc"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "bn"
    if isinstance(module, _ACTIVATIONS):
        return "act"
    if isinstance(module, nn.AdaptiveAvgPool2d | nn.AvgPool2d | nn.MaxPool2d):
        return "pool"
    if isinstance(module, nn.Dropout):
        return "dropout"
    return None  # Identity, Flatten: nothing to report


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    per_image = output[0].numel()
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_image * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return per_image * module.in_features
    return 0


def _separable_pairs(model: nn.Module) -> list[tuple[str, nn.Conv2d, nn.Conv2d]]:
    pairs = []
    for name, module in model.named_modules():
        if isinstance(module, DepthwiseSeparable):
            pairs.append((name, module.depthwise.conv, module.pointwise.conv))
        elif isinstance(module, InvertedResidual):
            pairs.append((name, module.depthwise.conv, module.project.conv))
    return pairs


@torch.no_grad()
def profile(
    model: nn.Module,
    input_size: int | tuple[int, int] = 224,
    *,
    in_chans: int | None = None,
) -> Profile:
    """Count parameters and mult-adds of ``model`` per leaf layer for one image.

    Args:
        model: any ``nn.Module`` taking a (1, C, H, W) batch.
        input_size: the resolution (ρ·224 in the V1 paper), an int or (H, W).
        in_chans: image channels; default ``model.in_chans`` or 3.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    c = in_chans or getattr(model, "in_chans", 3)
    se_names = {n for n, m in model.named_modules() if isinstance(m, SqueezeExcite)}
    rows: list[LayerRow] = []
    outputs: dict[str, tuple[int, ...]] = {}
    handles = []

    def hook(name: str, kind: str):
        def record(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            own = list(module.parameters(recurse=False))
            paper = (
                module.weight.numel()
                if kind not in ZERO_COST_KINDS and hasattr(module, "weight")
                else 0
            )
            outputs[name] = tuple(output.shape)
            rows.append(
                LayerRow(
                    name,
                    kind,
                    tuple(output.shape),
                    sum(p.numel() for p in own if p.requires_grad),
                    paper,
                    _macs(module, output),
                )
            )

        return record

    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue
        in_se = any(name.startswith(s + ".") for s in se_names)
        kind = layer_kind(module, in_se)
        if kind is not None:
            handles.append(module.register_forward_hook(hook(name, kind)))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters(), torch.zeros(())).device
        model(torch.zeros(1, c, h, w, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    separable = _separable_costs(model, rows, outputs)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    name = getattr(model, "model_name", type(model).__name__)
    return Profile(name, (c, h, w), rows, total, separable)


def _separable_costs(
    model: nn.Module, rows: list[LayerRow], outputs: dict[str, tuple[int, ...]]
) -> list[SeparableCost]:
    """Each depthwise separable pair's mult-adds beside a full conv of the same shape (Eq. 5)."""
    separable = []
    names = {m: n for n, m in model.named_modules()}
    for name, dw, pw in _separable_pairs(model):
        dw_name, pw_name = names[dw], names[pw]
        if dw_name not in outputs:
            continue
        _, _, oh, ow = outputs[dw_name]
        k = dw.kernel_size[0]
        macs = {r.name: r.macs for r in rows if r.name in (dw_name, pw_name)}
        separable.append(
            SeparableCost(
                name,
                dw.in_channels,
                pw.out_channels,
                k,
                (oh, ow),
                macs[dw_name] + macs[pw_name],
                k * k * dw.in_channels * pw.out_channels * oh * ow,
            )
        )
    return separable
