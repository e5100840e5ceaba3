"""A weight-sharing supernet over a :class:`~mobilenets.models.search_space.SearchSpace`:
single-path one-shot (Guo et al. 2019), every candidate a slice of one network.

The supernet *is* the space's largest candidate, a MobileNetV3 (deepest stages, widest
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

from mobilenets.errors import ConfigError
from mobilenets.layers import make_divisible
from mobilenets.models.mobilenet_v3 import MobileNetV3
from mobilenets.models.registry import create_model, get_model_entry
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


class SuperNet(MobileNetV3):
    """The space's largest candidate, a plain MobileNetV3 (its ``state_dict`` is that
    network's), run along any candidate.

    In training, each forward call draws its own candidate (single-path uniform sampling) from
    a generator seeded by ``seed`` and the epoch (:meth:`set_epoch`, called by the training loop
    as it calls the sampler's): a resumed run and every process of a torchrun job draw the same
    paths. In evaluation, without a candidate, it is the largest network.

    Args:
        space: the search space.
        seed: seeds the paths drawn in training.
        **kwargs: the base network's keywords (``num_classes``, ``in_chans``, ``dropout``; a
            ``table`` must be the space's largest).
    """

    def __init__(self, space: SearchSpace | dict, seed: int = 0, **kwargs: object) -> None:
        space = space if isinstance(space, SearchSpace) else SearchSpace.from_dict(space)
        largest = space.table(space.largest())
        if kwargs.pop("table", largest) != largest:
            raise ConfigError("a supernet's table is its search space's largest candidate")
        if kwargs.pop("width_mult", 1.0) != 1.0:
            raise ConfigError("a supernet's widths are its search space's (width_mult 1)")
        preset = get_model_entry(space.base).preset
        super().__init__(**preset, table=largest, **kwargs)
        self.space, self.seed = space, seed
        self.model_name, self.model_kwargs = space.base, {"table": largest, **kwargs}
        first, self.slots = 0, []  # the net's block index of (stage, block)
        for depths in space.stage_depths:
            self.slots.append(list(range(first, first + max(depths))))
            first += max(depths)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Seed the paths of ``epoch`` (as ``DistributedSampler.set_epoch`` seeds its order)."""
        self.rng = random.Random(self.seed * 100_003 + epoch)

    def sample(self) -> dict:
        """The next candidate of this epoch's seeded sequence (uniform over the space)."""
        return self.space.sample(self.rng)

    def forward(self, x: torch.Tensor, candidate: dict | None = None) -> torch.Tensor:
        """Logits of ``candidate``; without one, a freshly drawn path in training and the
        largest network in evaluation."""
        if candidate is None:
            if not self.training:
                return super().forward(x)
            candidate = self.sample()
        table = self.space.table(candidate)
        rows = iter(table["rows"])
        x = self.stem(x)
        for stage, slots in zip(candidate["stages"], self.slots, strict=True):
            for slot in slots[: len(stage["blocks"])]:
                x = self._block(self.blocks[slot], next(rows), x)
        x = _conv_bn(self.blocks[-1], x, table["last"][0], table["head_nl"])  # the last 1×1
        return self.forward_head(x)

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
        model = create_model(self.space.base, **{**self.model_kwargs, "table": table})
        rename = {}  # the subnet's block index → the supernet's
        for stage, slots in zip(candidate["stages"], self.slots, strict=True):
            first = len(rename)
            for j in range(len(stage["blocks"])):
                rename[first + j] = slots[j]
        rename[len(rename)] = len(self.blocks) - 1  # the last 1×1 conv
        source = self.state_dict()
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
