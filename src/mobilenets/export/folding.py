"""BatchNorm folding: each conv absorbs the BatchNorm after it (inference only)."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from mobilenets.layers import ConvNormAct


def fold_bn(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` whose ``ConvNormAct`` convs carry their BatchNorm.

    W' = W·γ/σ, b' = β − μ·γ/σ with σ = sqrt(running_var + eps) (torch's ``fuse_conv_bn_eval``);
    the BN modules become ``Identity``, so ``profile`` shows the same mult-adds without BN rows.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, ConvNormAct) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()
    return folded
