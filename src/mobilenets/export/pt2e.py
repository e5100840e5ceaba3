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

import copy
import types
from collections.abc import Iterable

import torch
from torch import nn

#: What a QAT run's files say of themselves.
QAT_SCHEME = (
    "int8 QAT (PT2E, XNNPACK quantizer: per-channel symmetric int8 weights, int8 activations)"
)

_BATCH_NORM = "aten.batch_norm.default"  # (x, weight, bias, mean, var, training, momentum, eps, …)
_DROPOUT = "aten.dropout.default"  # (x, p, train)
_ADD = "aten.add.Tensor"
_TORCHAO_EPS = 1e-5  # the eps convert_pt2e folds conv + BN with


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


def prepare_qat(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """``model`` captured in training mode with a free batch dimension and fake-quantized for
    QAT. Its parameters and buffers keep ``model``'s names (``blocks.0.conv.weight``), so its
    ``state_dict`` holds the float weights plus the quantizers' state; ``.train()``/``.eval()``
    switch BatchNorm and dropout as a module's would (their eps and momentum kept).

    A detector's backbone and head are captured as one graph (:class:`DetectorGraph`: its
    whole network, prediction layers included, trains for int8) and run inside the detector's
    own resize, anchors, losses and decoding (:class:`ExportedDetector`, names ``graph.…``)."""
    task = getattr(model, "task", "")
    dims = {0: torch.export.Dim("batch", min=1, max=4096)}
    if task == "detection":  # its transform resizes every image to one size
        from mobilenets.models.detection import DetectorGraph, ExportedDetector

        graph = _fake_quantized(DetectorGraph(model), example, dims)
        return ExportedDetector(graph, copy.deepcopy(model)).train()
    if task == "segmentation":  # held-out images may be larger than crops
        dims[2] = torch.export.Dim("height", min=32, max=8192)  # MobileNets take ≥ 32 px
        dims[3] = torch.export.Dim("width", min=32, max=8192)
    return _fake_quantized(model, example, dims).train()


def _fake_quantized(model: nn.Module, example: torch.Tensor, dims: dict) -> torch.fx.GraphModule:
    """``model`` captured in training mode (``dims``: its free dimensions), with the XNNPACK
    quantizer's fake quantizers, and its BatchNorm and dropout switchable."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

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
    return prepared


def _batch_norm_settings(graph: torch.fx.GraphModule) -> dict[str, tuple]:
    """Each BatchNorm's (momentum, eps), by the name of its running variance."""
    return {
        str(node.args[4].target): tuple(node.args[6:8])
        for node in graph.graph.nodes
        if str(node.target) == _BATCH_NORM and node.args[4].op == "get_attr"
    }


def _restore_batch_norm_settings(graph: torch.fx.GraphModule, settings: dict[str, tuple]) -> None:
    """Put back each BatchNorm's momentum and eps: ``prepare_qat_pt2e``'s conv + BN rewrite
    writes torch's defaults (eps 1e-5), in the BatchNorm and in the ``running_var + eps`` that
    scales the weights it fake-quantizes. Our V3 blocks and detectors use eps 1e-3, and a
    trained channel's running variance can be 1e-6:

    - with the wrong eps in the BatchNorm, QAT would start from another network (the digits
      V3-Small's stem differed from its float self by 8.8 at the BN output);
    - with it right there but not in the weight scaling, the trained weight scales belong to
      weights ``sqrt((var + 1e-3) / (var + 1e-5))`` times larger than the ones
      ``convert_pt2e`` folds with the BatchNorm's eps: the trees SSDLite-V2's int8 program
      fell to 9.9% AP50 where its fake-int8 network scored 21.4%."""
    found = scaled = 0
    for node in graph.graph.nodes:
        if str(node.target) == _BATCH_NORM and node.args[4].op == "get_attr":
            momentum_eps = settings.get(str(node.args[4].target))
            if momentum_eps is not None:
                node.args = (*node.args[:6], *momentum_eps, *node.args[8:])
                found += 1
        elif str(node.target) == _ADD and isinstance(node.args[0], torch.fx.Node):
            source = node.args[0]  # running_var + eps, where the weights are scaled
            momentum_eps = settings.get(str(source.target)) if source.op == "get_attr" else None
            if momentum_eps is not None and isinstance(node.args[1], float):
                node.args = (source, momentum_eps[1])
                scaled += 1
    if found != len(settings) or scaled != found:
        raise RuntimeError(
            f"QAT capture: of {len(settings)} BatchNorm layers, {found} found and {scaled} "
            "folded weight scalings after prepare_qat_pt2e"
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

    network = getattr(model, "module", model)  # under DDP
    for part in network.modules():
        if is_qat_graph(part):
            part.freeze_bn = freeze_bn
    network.train(network.training)
    network.apply(disable_observer if freeze_observers else enable_observer)


def convert_qat(prepared: nn.Module) -> torch.fx.GraphModule:
    """The int8 graph of a QAT network (its fake quantizers become quantize/dequantize pairs
    with the trained scales; BatchNorm folded); a detector's, its network's graph."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    if not isinstance(prepared, torch.fx.GraphModule):  # a detector: its backbone and head
        prepared = prepared.graph
    graph = copy.deepcopy(prepared.eval())  # its buffers may be a float model's too; a
    _fold_with_torchaos_eps(graph)  # GraphModule's copy keeps the graph, not our attributes
    converted = convert_pt2e(graph)
    converted.freeze_bn = True
    converted.train = types.MethodType(_train, converted)  # torchao's raises; eval() is needed
    converted.eval = types.MethodType(lambda self: self.train(False), converted)
    for name in ("task", "num_classes", "in_chans", "model_name", "model_kwargs"):
        if hasattr(prepared, name):
            setattr(converted, name, getattr(prepared, name))
    return converted


def _fold_with_torchaos_eps(graph: torch.fx.GraphModule) -> None:
    """Make ``convert_pt2e``'s conv + BN folding exact: it folds with eps 1e-5 whatever the
    BatchNorm's (its patterns' literal, torchao's "TODO: allow setting eps"), so each
    BatchNorm's running variance takes the difference (``var + eps - 1e-5``) and its eps
    becomes 1e-5. In eval, what convert folds, ``sqrt(var + eps)`` is unchanged, in the
    BatchNorm and in the weight scaling. Without this, the trees SSDLite-V2 (eps 1e-3, many
    channels of variance below 1e-4) converted to a program whose logits differed from its
    fake-int8 network's by 12 where they span 64."""
    found = {}
    for node in graph.graph.nodes:
        if str(node.target) == _BATCH_NORM and node.args[4].op == "get_attr":
            eps = node.args[7]
            if eps != _TORCHAO_EPS:
                name = str(node.args[4].target)
                if name not in found:
                    graph.get_buffer(name).add_(eps - _TORCHAO_EPS)
                    found[name] = eps
                node.args = (*node.args[:7], _TORCHAO_EPS, *node.args[8:])
    for node in graph.graph.nodes:  # the weight scalings' running_var + eps
        source = node.args[0] if str(node.target) == _ADD else None
        if isinstance(source, torch.fx.Node) and str(source.target) in found:
            node.args = (source, _TORCHAO_EPS)
    graph.recompile()


def is_qat_graph(model: nn.Module) -> bool:
    return isinstance(model, torch.fx.GraphModule) and hasattr(model, "freeze_bn")
