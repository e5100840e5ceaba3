"""int8 through PyTorch 2 Export quantization (PT2E) with the XNNPACK quantizer: per-channel
symmetric int8 weights, static int8 activations.

Two ways to the same graph:

- **post-training** (:func:`quantize_pt2e`): observers see calibration images, then convert;
- **quantization-aware training** (:func:`prepare_qat`): the trained network is captured with a
  free batch dimension and fake-quantized (``prepare_qat_pt2e``: conv + BN folding simulated, as
  the int8 program will run it), fine-tuned in the one training loop, then converted by
  :func:`convert_qat`. The schedule is torchvision's QAT reference's: BN statistics are frozen
  after some epochs, then the observers (:func:`set_qat_phase`).

A converted graph lowers to an ExecuTorch program (XNNPACK) or exports to a QDQ ONNX model (which
ONNX Runtime runs, and OpenVINO converts), so a QAT file and a PTQ file are the same program.
"""

from __future__ import annotations

import types
from collections.abc import Iterable

import torch
from torch import nn

from mobilenets.errors import ConfigError

#: What a QAT run's files say of themselves.
QAT_SCHEME = (
    "int8 QAT (PT2E, XNNPACK quantizer: per-channel symmetric int8 weights, int8 activations)"
)

_BATCH_NORM = "aten.batch_norm.default"  # (x, weight, bias, mean, var, training, momentum, eps, …)
_DROPOUT = "aten.dropout.default"  # (x, p, train)


def xnnpack_quantizer(qat: bool = False) -> object:
    """The XNNPACK quantizer every int8 ``.pte`` uses, for training (fake quantization) or not."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(is_per_channel=True, is_qat=qat)
    return XNNPACKQuantizer().set_global(config)


def quantize_pt2e(model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor]):
    """Post-training int8: observers fed ``calibration``'s batches (one image at a time: the
    captured graph takes batch 1), then converted."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    captured = torch.export.export(model.eval(), (example,)).module()
    prepared = prepare_pt2e(captured, xnnpack_quantizer())
    with torch.no_grad():
        for batch in calibration:
            for i in range(len(batch)):
                prepared(batch[i : i + 1])
    return convert_pt2e(prepared)


def prepare_qat(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """``model`` captured in training mode with a free batch dimension and fake-quantized for
    QAT. Its parameters and buffers keep ``model``'s names (``blocks.0.conv.weight``), so its
    ``state_dict`` holds the float weights plus the quantizers' state; ``.train()``/``.eval()``
    switch BatchNorm and dropout as a module's would (their eps and momentum kept)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    if getattr(model, "task", "") == "detection":
        raise ConfigError(
            "--qat trains classifiers and segmenters; a detector's int8 comes from `mobilenets "
            "quantize` (post-training, its prediction layers kept fp32)"
        )
    batch = torch.export.Dim("batch", min=1, max=4096)
    dims = {0: batch}
    if getattr(model, "task", "") == "segmentation":  # held-out images may be larger than crops
        dims[2] = torch.export.Dim("height", min=32, max=8192)  # MobileNets take ≥ 32 px
        dims[3] = torch.export.Dim("width", min=32, max=8192)
    captured = torch.export.export(model.train(), (example,), dynamic_shapes=(dims,)).module()
    settings = _batch_norm_settings(captured)
    prepared = prepare_qat_pt2e(captured, xnnpack_quantizer(qat=True))
    _restore_batch_norm_settings(prepared, settings)
    prepared.freeze_bn = False
    prepared.train = types.MethodType(_train, prepared)
    prepared.eval = types.MethodType(lambda self: self.train(False), prepared)
    for name in ("task", "num_classes", "in_chans", "model_name", "model_kwargs"):
        if hasattr(model, name):
            setattr(prepared, name, getattr(model, name))
    return prepared.train()


def _batch_norm_settings(graph: torch.fx.GraphModule) -> dict[str, tuple]:
    """Each BatchNorm's (momentum, eps), by the name of its running variance."""
    return {
        str(node.args[4].target): tuple(node.args[6:8])
        for node in graph.graph.nodes
        if str(node.target) == _BATCH_NORM and node.args[4].op == "get_attr"
    }


def _restore_batch_norm_settings(graph: torch.fx.GraphModule, settings: dict[str, tuple]) -> None:
    """Put back each BatchNorm's momentum and eps: ``prepare_qat_pt2e``'s conv + BN rewrite
    writes torch's defaults (eps 1e-5). Our V3 blocks use eps 1e-3, and a trained channel's
    running variance can be 1e-6: with the wrong eps, QAT would start from another network
    (the digits V3-Small's stem differed from its float self by 8.8 at the BN output)."""
    found = 0
    for node in graph.graph.nodes:
        if str(node.target) == _BATCH_NORM and node.args[4].op == "get_attr":
            momentum_eps = settings.get(str(node.args[4].target))
            if momentum_eps is not None:
                node.args = (*node.args[:6], *momentum_eps, *node.args[8:])
                found += 1
    if found != len(settings):
        raise RuntimeError(
            f"QAT capture: {found} of {len(settings)} BatchNorm layers found after prepare_qat_pt2e"
        )
    graph.recompile()


def _train(self: torch.fx.GraphModule, mode: bool = True) -> torch.fx.GraphModule:
    """``train()`` of a captured graph: BatchNorm normalises with batch statistics and updates
    its running ones only in training and before ``freeze_bn``; dropout drops only in training."""
    nn.Module.train(self, mode)
    batch_statistics = mode and not self.freeze_bn
    changed = False
    for node in self.graph.nodes:
        target = str(node.target)
        flag = {_BATCH_NORM: (5, batch_statistics), _DROPOUT: (2, mode)}.get(target)
        if flag is not None and node.args[flag[0]] != flag[1]:
            args = list(node.args)
            args[flag[0]] = flag[1]
            node.args = tuple(args)
            changed = True
    if changed:
        self.recompile()
    return self


def set_qat_phase(model: nn.Module, *, freeze_bn: bool, freeze_observers: bool) -> None:
    """torchvision's QAT schedule, as two switches: BatchNorm statistics frozen (the folded
    weights stop moving with the batch), then the activation ranges frozen (observers off; the
    fake quantizers keep their last scale and zero point)."""
    from torchao.quantization.pt2e import disable_observer, enable_observer

    graph = model.module if hasattr(model, "module") else model  # under DDP
    graph.freeze_bn = freeze_bn
    graph.train(graph.training)
    graph.apply(disable_observer if freeze_observers else enable_observer)


def convert_qat(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """The int8 graph of a QAT network (its fake quantizers become quantize/dequantize pairs
    with the trained scales; BatchNorm folded)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    converted = convert_pt2e(prepared.eval())
    converted.freeze_bn = True
    converted.train = types.MethodType(_train, converted)  # torchao's raises; eval() is needed
    converted.eval = types.MethodType(lambda self: self.train(False), converted)
    for name in ("task", "num_classes", "in_chans", "model_name", "model_kwargs"):
        if hasattr(prepared, name):
            setattr(converted, name, getattr(prepared, name))
    return converted


def is_qat_graph(model: nn.Module) -> bool:
    return isinstance(model, torch.fx.GraphModule) and hasattr(model, "freeze_bn")
