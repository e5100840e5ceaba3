"""NetAdapt's proposals and their weights: which channels a step may cut, and what survives.

A proposal cuts one *unit* of a V2/V3 table (Yang et al. 2018, Algorithm 1, "choose # of
filters"; V3 paper, Section 5.2):

- a block's expansion channels (its 1×1 expansion, depthwise and squeeze-excite width), or
- the output channels of a *group*: blocks joined by residual connections must keep equal
  widths, so a stage's blocks are cut together (the V3 paper's "reduce the bottleneck size").

A cut keeps channels divisible by ``divisor`` and never changes the network's structure (an
expansion conv appearing or vanishing, a residual connection appearing). The cut network
inherits the seed's weights: the kept filters are those with the largest L1 norm (NetAdapt's
choice, after Li et al. 2017), and every tensor they feed is sliced to match.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Unit:
    """What one proposal cuts: ``("exp", block)`` or ``("out", first block, last block)``."""

    kind: str  # "exp" or "out"
    first: int
    last: int

    def describe(self) -> str:
        if self.kind == "exp":
            return f"block {self.first} expansion"
        if self.last > self.first:
            return f"blocks {self.first}–{self.last} output"
        return f"block {self.first} output"


def units(table: dict, family: str) -> list[Unit]:
    """Every cuttable unit of a table: each block with an expansion conv, each residual group."""
    key, rows = "out", table["rows"]
    found, cin, start = [], table["stem"], 0
    for i, row in enumerate(rows):
        if row["exp"] != cin:
            found.append(Unit("exp", i, i))
        cin = row[key]
    for i in range(1, len(rows) + 1):
        joined = i < len(rows) and rows[i]["s"] == 1 and rows[i][key] == rows[i - 1][key]
        if not joined:
            found.append(Unit("out", start, i - 1))
            start = i
    return found


def structure(table: dict, family: str) -> list[tuple[bool, bool]]:
    """Per block: (has an expansion conv, has a residual connection)."""
    key, cin, shape = "out", table["stem"], []
    for row in table["rows"]:
        shape.append((row["exp"] != cin, row["s"] == 1 and row[key] == cin))
        cin = row[key]
    return shape


def width(table: dict, family: str, unit: Unit) -> int:
    row = table["rows"][unit.first]
    return row["exp"] if unit.kind == "exp" else row["out"]


def cut(table: dict, family: str, unit: Unit, channels: int) -> dict | None:
    """``table`` with ``unit`` at ``channels``; None when that would change the structure."""
    new = copy.deepcopy(table)
    for i in range(unit.first, unit.last + 1):
        new["rows"][i]["exp" if unit.kind == "exp" else "out"] = channels
    return new if structure(new, family) == structure(table, family) else None


# --- weight inheritance ------------------------------------------------------------------------


def _top(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` largest scores, in their original order."""
    return torch.sort(torch.topk(scores, count).indices).values


def _l1(weight: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output filter."""
    return weight.abs().flatten(1).sum(1)


def _slice_conv_norm(module: nn.Module, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None,
                     target: nn.Module) -> None:  # fmt: skip
    """Copy a ConvNormAct's conv and BN into ``target``, keeping the given channels."""
    weight = module.conv.weight
    depthwise = module.conv.groups > 1
    if out_idx is not None:
        weight = weight[out_idx]
    if in_idx is not None and not depthwise:
        weight = weight[:, in_idx]
    target.conv.weight.copy_(weight)
    if module.conv.bias is not None:
        bias = module.conv.bias
        target.conv.bias.copy_(bias[out_idx] if out_idx is not None else bias)
    if isinstance(module.bn, nn.BatchNorm2d):
        for name in ("weight", "bias", "running_mean", "running_var"):
            value = getattr(module.bn, name)
            getattr(target.bn, name).copy_(value[out_idx] if out_idx is not None else value)
        target.bn.num_batches_tracked.copy_(module.bn.num_batches_tracked)


def _slice_se(se: nn.Module, hidden: torch.Tensor, target: nn.Module) -> None:
    """Squeeze-excite on the kept hidden channels; its own width follows (hidden / 4)."""
    fc1 = se.fc1.weight[:, hidden]
    squeeze = _top(_l1(fc1), target.fc1.out_channels)
    target.fc1.weight.copy_(fc1[squeeze])
    target.fc1.bias.copy_(se.fc1.bias[squeeze])
    target.fc2.weight.copy_(se.fc2.weight[hidden][:, squeeze])
    target.fc2.bias.copy_(se.fc2.bias[hidden])


@torch.no_grad()
def inherit(seed: nn.Module, target: nn.Module, family: str) -> nn.Module:
    """Copy ``seed``'s weights into ``target`` (the same table but narrower units), keeping the
    filters with the largest L1 norm; returns ``target``."""
    table, key = target.table, "out"
    keep_out: dict[int, torch.Tensor] = {}
    for unit in units(seed.table, family):
        if unit.kind == "out":
            count = table["rows"][unit.first][key]
            blocks = [seed.blocks[i] for i in range(unit.first, unit.last + 1)]
            score = sum(_l1(b.project.conv.weight * _bn_scale(b.project)) for b in blocks)
            for i in range(unit.first, unit.last + 1):
                keep_out[i] = _top(score, count)
    _slice_conv_norm(seed.stem, None, None, target.stem)
    in_idx = None  # the stem is never cut
    for i in range(len(table["rows"])):
        old, new = seed.blocks[i], target.blocks[i]
        if isinstance(old.expand, nn.Identity):  # the depthwise conv works on the block's input
            hidden = in_idx if in_idx is not None else torch.arange(old.depthwise.conv.in_channels)
        else:
            score = _l1(old.expand.conv.weight * _bn_scale(old.expand))
            hidden = _top(score, table["rows"][i]["exp"])
            _slice_conv_norm(old.expand, hidden, in_idx, new.expand)
        _slice_conv_norm(old.depthwise, hidden, None, new.depthwise)
        if not isinstance(old.se, nn.Identity):
            _slice_se(old.se, hidden, new.se)
        _slice_conv_norm(old.project, keep_out[i], hidden, new.project)
        in_idx = keep_out[i]
    _copy_tail(seed, target, len(table["rows"]), in_idx)
    return target


def _bn_scale(module: nn.Module) -> torch.Tensor:
    """γ/σ of a ConvNormAct's BN, shaped to scale its conv's filters (1 without BN)."""
    if not isinstance(module.bn, nn.BatchNorm2d):
        return torch.ones(1)
    bn = module.bn
    return (bn.weight / torch.sqrt(bn.running_var + bn.eps)).view(-1, 1, 1, 1)


def _copy_tail(seed: nn.Module, target: nn.Module, first: int, in_idx: torch.Tensor) -> None:
    """Everything after the blocks: the last 1×1 conv (input sliced), pre-logits, classifier."""
    old_last = seed.blocks[first] if len(seed.blocks) > first else seed.head
    new_last = target.blocks[first] if len(target.blocks) > first else target.head
    _slice_conv_norm(old_last, None, in_idx, new_last)
    tail = ("pre_logits", "classifier")
    state = {k: v for k, v in seed.state_dict().items() if k.split(".")[0] in tail}
    target.load_state_dict(state, strict=False)


def granularity(table: dict, family: str, divisor: int = 8) -> int:
    """The channel step of cuts: ``divisor``, or 4 when a unit is already below 2·divisor."""
    smallest = min(width(table, family, u) for u in units(table, family))
    return divisor if smallest >= 2 * divisor else max(1, divisor // 2)


def narrower(channels: int, step: int) -> list[int]:
    """The widths a unit may be cut to, widest first: the multiples of ``step`` below it."""
    return [c for c in range(channels - 1, 0, -1) if c % step == 0]
