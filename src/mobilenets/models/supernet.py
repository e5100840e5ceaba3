"""A weight-sharing supernet over a :class:`~mobilenets.models.search_space.SearchSpace`:
single-path one-shot (Guo et al. 2019), every candidate a slice of one network.

The supernet *is* the space's largest candidate, a plain MobileNetV3 (deepest stages, widest
outputs, largest expansion and kernel, SE in every block). A candidate runs through it as a
path: the first blocks of each stage, the first channels of every layer, the centre of each
depthwise kernel (as once-for-all's elastic kernel, without its transform matrices), the first
squeeze channels of each SE. :meth:`SuperNet.subnet` cuts the same slices out as a standalone
network with the candidate's table, so what the supernet computed for a candidate is what that
network computes (tested to float precision), and a candidate is scored on inherited weights
once its BatchNorm statistics are recalibrated (:func:`recalibrate_bn`: shared statistics
belong to no single path).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from mobilenets.layers import make_divisible
from mobilenets.models.registry import create_model
from mobilenets.models.search_space import SearchSpace

_ACTIVATIONS = {"RE": F.relu, "HS": F.hardswish, None: lambda x: x}


def _conv_bn(
    layer: nn.Module,
    x: torch.Tensor,
    out: int,
    act: str | None,
    kernel: int | None = None,
    stride: int = 1,
    depthwise: bool = False,
) -> torch.Tensor:
    """A :class:`~mobilenets.layers.ConvNormAct` on its first ``out`` output channels (and the
    input's channels; a depthwise conv's centre ``kernel`` × ``kernel``)."""
    weight = layer.conv.weight[:out] if depthwise else layer.conv.weight[:out, : x.shape[1]]
    if kernel is not None and kernel < weight.shape[-1]:
        crop = (weight.shape[-1] - kernel) // 2
        weight = weight[..., crop : crop + kernel, crop : crop + kernel]
    k = weight.shape[-1]
    y = F.conv2d(x, weight, None, stride, (k - 1) // 2, 1, out if depthwise else 1)
    bn = layer.bn
    y = F.batch_norm(
        y,
        bn.running_mean[:out],
        bn.running_var[:out],
        bn.weight[:out],
        bn.bias[:out],
        bn.training,
        bn.momentum,
        bn.eps,
    )
    return _ACTIVATIONS[act](y)


def _squeeze_excite(se: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block's SE on ``x``'s channels (squeeze: ``make_divisible(channels / 4, 8)``)."""
    channels = x.shape[1]
    squeeze = make_divisible(channels / 4, 8)
    s = se.pool(x)
    s = F.relu(F.conv2d(s, se.fc1.weight[:squeeze, :channels], se.fc1.bias[:squeeze]))
    s = F.hardsigmoid(F.conv2d(s, se.fc2.weight[:channels, :squeeze], se.fc2.bias[:channels]))
    return x * s


class SuperNet(nn.Module):
    """The space's largest candidate as a MobileNetV3 (``net``), run along any candidate.

    Args:
        space: the search space.
        num_classes, in_chans, dropout: as the base network's.
        seed: the first candidate drawn by :meth:`sample` (the same seed draws the same
            candidates on every process, so DDP's processes train one path per step).
    """

    def __init__(
        self,
        space: SearchSpace,
        num_classes: int = 1000,
        in_chans: int = 3,
        dropout: float = 0.2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.space = space
        self.net = create_model(
            space.base,
            table=space.table(space.largest()),
            num_classes=num_classes,
            in_chans=in_chans,
            dropout=dropout,
        )
        self.num_classes, self.in_chans = num_classes, in_chans
        first, self.slots = 0, []  # the net's block index of (stage, block)
        for depths in space.stage_depths:
            self.slots.append(list(range(first, first + max(depths))))
            first += max(depths)
        self.rng = random.Random(seed)
        self.candidate = space.largest()

    def sample(self) -> dict:
        """Draw the next candidate (uniformly) and make it the one :meth:`forward` runs."""
        self.candidate = self.space.sample(self.rng)
        return self.candidate

    def forward(self, x: torch.Tensor, candidate: dict | None = None) -> torch.Tensor:
        """Logits of ``candidate`` (default: the one drawn last)."""
        candidate = self.candidate if candidate is None else candidate
        table = self.space.table(candidate)
        net, rows = self.net, iter(table["rows"])
        x = net.stem(x)
        for stage, slots in zip(candidate["stages"], self.slots, strict=True):
            for slot in slots[: len(stage["blocks"])]:
                x = self._block(net.blocks[slot], next(rows), x)
        x = _conv_bn(net.blocks[-1], x, table["last"][0], table["head_nl"])  # the last 1×1
        return net.forward_head(x)

    @staticmethod
    def _block(block: nn.Module, row: dict, x: torch.Tensor) -> torch.Tensor:
        """One inverted residual along a table row (expansion skipped when ``exp`` is the
        input's width, as :class:`~mobilenets.layers.InvertedResidual` does)."""
        cin, hidden, out = x.shape[1], row["exp"], row["out"]
        y = x
        if hidden != cin:
            y = _conv_bn(block.expand, y, hidden, row["nl"])
        y = _conv_bn(block.depthwise, y, hidden, row["nl"], row["k"], row["s"], depthwise=True)
        if row["se"]:
            y = _squeeze_excite(block.se, y)
        y = _conv_bn(block.project, y, out, None)
        return x + y if row["s"] == 1 and cin == out else y

    def subnet(self, candidate: dict) -> nn.Module:
        """The candidate as a standalone MobileNetV3 (its table), with the supernet's weights:
        each tensor the slice :meth:`forward` uses."""
        table = self.space.table(candidate)
        model = create_model(
            self.space.base,
            table=table,
            num_classes=self.num_classes,
            in_chans=self.in_chans,
            dropout=self.net.head_drop.p,
        )
        rename = {}  # the subnet's block index → the supernet's
        for stage, slots in zip(candidate["stages"], self.slots, strict=True):
            first = len(rename)
            for j in range(len(stage["blocks"])):
                rename[first + j] = slots[j]
        rename[len(rename)] = len(self.net.blocks) - 1  # the last 1×1 conv
        source = self.net.state_dict()
        weights = {}
        for name, target in model.state_dict().items():
            parts = name.split(".")
            if parts[0] == "blocks":
                parts[1] = str(rename[int(parts[1])])
            weights[name] = _slice(source[".".join(parts)], target.shape)
        model.load_state_dict(weights)
        return model


def _slice(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The first entries of each dimension; of a conv kernel's two spatial ones, the centre."""
    index = []
    for dim, (have, want) in enumerate(zip(tensor.shape, shape, strict=True)):
        start = (have - want) // 2 if tensor.dim() == 4 and dim >= 2 else 0
        index.append(slice(start, start + want))
    return tensor[tuple(index)].clone()


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Reset every BatchNorm's running statistics and recompute them as the plain average over
    ``batches`` (training mode, no gradient), then return the model in eval mode: the
    statistics a weight-sharing path needs before it is scored (SPOS, Section 3.3)."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average
    model.train()
    for x in batches:
        model(x)
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    return model.eval()
