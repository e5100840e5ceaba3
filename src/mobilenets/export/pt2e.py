"""int8 through PyTorch 2 Export quantization (PT2E) with the XNNPACK quantizer: per-channel
symmetric int8 weights, static int8 activations.

Two ways to an int8 graph:

- **post-training** (:func:`quantize_pt2e`): observers see calibration images, then convert;
  three steps make it keep the real V2's predictions (58% → 88% agreement with fp32 on real
  crops, in the ``.pte``): a convolution and the ReLU6 after it are quantized as one operation
  (:func:`xnnpack_quantizer`), activation ranges are NNCF's (:func:`mean_min_max_observer`),
  and each layer's bias is corrected for the mean error quantization leaves in its output
  (:func:`correct_biases`);
- **quantization-aware training** (:func:`prepare_qat`): the trained network is captured with a
  free batch dimension and fake-quantized (``prepare_qat_pt2e``: conv + BN folding simulated, as
  the int8 program will run it), fine-tuned in the one training loop, then converted by
  :func:`convert_qat`. The schedule is torchvision's QAT reference's: BN statistics are frozen
  after some epochs, then the observers (:func:`set_qat_phase`).

A converted graph lowers to an ExecuTorch program (XNNPACK) or exports to a QDQ ONNX model (which
ONNX Runtime runs, and OpenVINO converts). A QAT file and a PTQ file are the same program: in
both, a convolution's output is rounded to int8 once, after the ReLU6 that clamps it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
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
_LAYERS = ("aten.conv2d.default", "aten.linear.default")
_CLAMPS = ("aten.hardtanh.default", "aten.hardtanh_.default")  # ReLU6, as torch.export writes it
_HARD_SWISH = ("aten.hardswish.default", "aten.hardswish_.default")
_ANNOTATION = "quantization_annotation"  # torchao's Q_ANNOTATION_KEY
_ACTIVATION_EPS = 2**-12  # XNNPACK's quantization configs' smallest activation scale


def xnnpack_quantizer(qat: bool = False) -> object:
    """The XNNPACK quantizer every int8 ``.pte`` uses, for training (fake quantization) or not.

    A convolution (or linear layer) followed by ReLU6 is one quantized operation, quantized
    after the clamp, as XNNPACK runs it (its ``FuseActivationPass`` folds the clamp into the
    convolution); in training, through the BatchNorm between them (:func:`_clamped_layer`).
    XNNPACK's own quantizer fuses ReLU only: after a ReLU6, the int8 range was the
    convolution's, negative outputs included (one V2 layer's [-2.6, 7.8] for values in
    [0, 6]), and the real V2 agreed with fp32 on 54% of real crops (70% fused). Its QAT graph
    rounded each such output twice, before the clamp and after it.

    Post-training, each activation's range is NNCF's (:func:`mean_min_max_observer`: each
    image's minimum and maximum, averaged over the images), not XNNPACK's histogram, but for
    the network's outputs, which keep their whole range (:func:`_outputs_keep_their_range`).
    On the real V2, with bias correction, in PyTorch's arithmetic over 260 real crops: mean KL
    from fp32 0.137 → 0.075, agreement 80.4% → 90.0%, where fp32 is confident 97.3% → 100%.
    With the outputs' ranges averaged too, confident predictions were clipped: 58.7%.

    A network with hard-swish (V3) keeps XNNPACK's histogram ranges: averaged ranges clip its
    unbounded activations. A V3-Small trained on ``photos`` (96 px, seed 1) kept 76.92% top-1
    in int8 with the histogram (fp32 77.31%), 67.31% with averaged ranges."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(is_per_channel=True, is_qat=qat)
    return _clamp_fusing_quantizer()().set_global(config)


def _with_averaged_ranges(config: object) -> object:
    """``config`` with :func:`mean_min_max_observer` for its activations."""
    averaged = mean_min_max_observer().with_args(eps=_ACTIVATION_EPS)
    return dataclasses.replace(
        config,
        input_activation=dataclasses.replace(
            config.input_activation, observer_or_fake_quant_ctr=averaged
        ),
        output_activation=dataclasses.replace(
            config.output_activation, observer_or_fake_quant_ctr=averaged
        ),
    )


@functools.cache
def mean_min_max_observer() -> type:
    """NNCF's activation range (``RangeEstimatorParametersSet.MEAN_MINMAX``, its default for
    per-tensor activations) as a PT2E observer: each image's minimum and maximum, averaged
    over the calibration images. Outliers in a few images no longer stretch the range every
    image is rounded to. (A function: torchao is imported only where int8 is made.)"""
    from torchao.quantization.pt2e.observer import MinMaxObserver

    class MeanMinMaxObserver(MinMaxObserver):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.register_buffer("sums", torch.zeros(2, dtype=torch.float64))
            self.register_buffer("images", torch.zeros((), dtype=torch.float64))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.numel() == 0:
                return x
            flat = x.detach().reshape(x.shape[0], -1).to(torch.float64)
            self.sums += torch.stack([flat.min(1).values.sum(), flat.max(1).values.sum()])
            self.images += flat.shape[0]
            self.min_val.copy_(self.sums[0] / self.images)
            self.max_val.copy_(self.sums[1] / self.images)
            return x

    return MeanMinMaxObserver


@functools.cache
def _clamp_fusing_quantizer() -> type:
    """XNNPACK's quantizer, annotating convolution + ReLU6 (``hardtanh`` 0..6) first."""
    from executorch.backends.xnnpack.quantizer import xnnpack_quantizer_utils as utils
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    class ClampFusingQuantizer(XNNPACKQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            config = self.global_config  # V3 keeps XNNPACK's histogram (xnnpack_quantizer)
            averaged = not config.is_qat and not any(
                str(node.target) in _HARD_SWISH for node in model.graph.nodes
            )
            if averaged:
                config = _with_averaged_ranges(config)
                self.set_global(config)
            for clamp in model.graph.nodes:
                layer, norm = _clamped_layer(clamp)
                if layer is None:
                    continue
                specs = {layer.args[0]: utils.get_input_act_qspec(config)}
                specs[layer.args[1]] = utils.get_weight_qspec(config)
                if len(layer.args) > 2 and isinstance(layer.args[2], torch.fx.Node):
                    specs[layer.args[2]] = utils.get_bias_qspec(config)
                partition = [clamp, layer, *list(specs)[1:], *([norm] if norm else [])]
                if utils._is_annotated(partition):
                    continue
                layer.meta[_ANNOTATION] = QuantizationAnnotation(
                    input_qspec_map=specs, _annotated=True
                )
                clamp.meta[_ANNOTATION] = QuantizationAnnotation(
                    output_qspec=utils.get_output_act_qspec(config), _annotated=True
                )
                utils._mark_nodes_as_annotated(partition)
            super().annotate(model)
            if averaged:
                _outputs_keep_their_range(model)
            return model

    return ClampFusingQuantizer


def _clamped_layer(clamp: torch.fx.Node) -> tuple[torch.fx.Node | None, torch.fx.Node | None]:
    """The convolution or linear layer a ReLU6 (``hardtanh`` 0..6) alone reads, directly
    (post-training: BatchNorm is folded first) or through its BatchNorm (QAT: ``prepare_qat_pt2e``
    simulates the fold after annotation); and that BatchNorm. ``(None, None)`` if none."""
    if str(clamp.target) not in _CLAMPS or tuple(clamp.args[1:3]) != (0.0, 6.0):
        return None, None
    layer, norm = clamp.args[0], None
    if isinstance(layer, torch.fx.Node) and str(layer.target) == _BATCH_NORM:
        norm, layer = layer, layer.args[0]
        if len(norm.users) > 1:
            return None, None
    if not isinstance(layer, torch.fx.Node) or str(layer.target) not in _LAYERS:
        return None, None
    return (layer, norm) if len(layer.users) == 1 else (None, None)


def _outputs_keep_their_range(model: torch.fx.GraphModule) -> None:
    """The quantized values the network outputs (logits, box offsets), observed by their
    whole minimum and maximum: an averaged range clips the largest logits, the confident
    predictions. Found from the output node back through nodes that share their input's
    range (concatenations, reshapes) or are not quantized (an upsampling)."""
    from torchao.quantization.pt2e.observer import MinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    whole = MinMaxObserver.with_args(eps=_ACTIVATION_EPS)
    (output,) = [node for node in model.graph.nodes if node.op == "output"]
    pending, seen = list(output.all_input_nodes), set()
    while pending:
        node = pending.pop()
        if node in seen or node.op != "call_function":
            continue
        seen.add(node)
        annotation = node.meta.get(_ANNOTATION)
        spec = getattr(annotation, "output_qspec", None)
        if isinstance(spec, QuantizationSpec):
            annotation.output_qspec = dataclasses.replace(spec, observer_or_fake_quant_ctr=whole)
        else:
            pending.extend(node.all_input_nodes)


def quantize_pt2e(
    model: nn.Module,
    example: torch.Tensor,
    calibration: Iterable[torch.Tensor],
    bias_correction: bool = True,
) -> torch.fx.GraphModule:
    """Post-training int8: observers fed ``calibration``'s batches, then converted, then
    :func:`correct_biases` on the first of those images (up to :data:`CORRECTION_PIXELS`)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    dims = {0: torch.export.Dim("batch", min=1, max=4096)}
    example = torch.cat([example, example])  # a free batch needs an example of 2
    captured = torch.export.export(model.eval(), (example,), dynamic_shapes=(dims,)).module()
    prepared = prepare_pt2e(captured, xnnpack_quantizer())
    kept, pixels = [], 0  # what bias correction reads: the first images, of one size
    with torch.no_grad():
        for batch in calibration:
            prepared(batch)
            if pixels < CORRECTION_PIXELS and (not kept or batch.shape[1:] == kept[0].shape[1:]):
                kept.append(batch)
                pixels += batch.shape[0] * batch.shape[2:].numel()
    converted = convert_pt2e(prepared)
    if bias_correction and kept:
        images = torch.cat(kept)
        count = max(1, CORRECTION_PIXELS // images.shape[2:].numel())
        correct_biases(converted, model, images[:count])
    return converted


#: At most this many pixels (images × height × width) in one :func:`correct_biases` batch:
#: 128 crops of 224 px (the real V2's whole ``quantize_pte``: 3.5 GB at most).
CORRECTION_PIXELS = 128 * 224 * 224


@torch.no_grad()
def correct_biases(graph: torch.fx.GraphModule, model: nn.Module, images: torch.Tensor) -> int:
    """Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization", Section 4.2;
    NNCF's ``BiasCorrection``): layer by layer in the int8 ``graph``, each convolution's and
    linear layer's bias is shifted so that, over ``images``, each output channel's mean
    equals the same layer's in the float ``model``, the later layers seeing the corrected
    outputs. Quantized weights shift each channel's mean output; nothing else brings it back.

    Where ReLU6 follows a layer, the means matched are the clamped ones, what the next layer
    reads: a channel mostly below 0 hides most of its error in the clamp. On the real V2
    (260 real crops) this took the mean KL divergence from fp32 from 0.23 (no correction) to
    0.14, agreement from 71% to 80%; matching before the clamp, 0.21 and 76%. Layers the
    model runs more than once (one bias, two nodes) are left as they are. Returns how many
    biases were corrected."""
    layers = {node: _bias_node(node) for node in graph.graph.nodes}
    clamps = {str(bias.target): _clamp_after(node) for node, bias in layers.items() if bias}
    means, calls, hooks = {}, {}, []

    def record(name: str, output: torch.Tensor) -> None:
        bounds = clamps.get(name)
        means[name] = _channel_means(output if bounds is None else output.clamp(*bounds))
        calls[name] = calls.get(name, 0) + 1

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            hook = functools.partial(lambda name, m, i, o: record(name, o), f"{name}.bias")
            hooks.append(module.register_forward_hook(hook))
    try:
        model.eval()(images)
    finally:
        for hook in hooks:
            hook.remove()
    once = {name: mean for name, mean in means.items() if calls[name] == 1}
    corrector = _BiasCorrector(graph, once, clamps)
    corrector.run(images)
    return corrector.corrected


def _channel_means(output: torch.Tensor) -> torch.Tensor:
    return output.mean(dim=[0, *range(2, output.dim())])


def _clamp_after(node: torch.fx.Node) -> tuple[float, float] | None:
    """The (min, max) of the ReLU6 that alone reads ``node``'s output, if one does."""
    users = list(node.users)
    if len(users) == 1 and str(users[0].target) in _CLAMPS:
        return float(users[0].args[1]), float(users[0].args[2])
    return None


def _shift_to_mean(
    output: torch.Tensor, target: torch.Tensor, bounds: tuple | None
) -> torch.Tensor:
    """Per channel, the shift ``s`` that makes the mean of ``clamp(output - s)`` ``target``:
    the mean error itself without a clamp; with one, Newton's steps from there (the slope is
    the share of the channel's values inside the clamp; a channel all outside keeps the
    unclamped shift)."""
    shape = (1, -1, *[1] * (output.dim() - 2))
    shift = _channel_means(output) - target
    if bounds is None:
        return shift
    for _ in range(8):
        shifted = output - shift.view(shape)
        excess = _channel_means(shifted.clamp(*bounds)) - target
        if float(excess.abs().max()) < 1e-5:
            break
        inside = _channel_means(((shifted > bounds[0]) & (shifted < bounds[1])).float())
        shift = shift + torch.where(inside > 1e-3, excess / inside.clamp_min(1e-3), 0.0)
    return shift


class _BiasCorrector(torch.fx.Interpreter):
    """Runs an int8 graph on a batch, correcting each layer's bias (and output) on the way."""

    def __init__(self, graph: torch.fx.GraphModule, float_means: dict, clamps: dict):
        super().__init__(graph)
        self.float_means, self.clamps = float_means, clamps  # of layers run once
        self.corrected = 0

    def run_node(self, node: torch.fx.Node) -> object:
        output = super().run_node(node)
        bias = _bias_node(node)
        name = str(bias.target) if bias is not None else ""
        if name in self.float_means:
            shift = _shift_to_mean(output, self.float_means[name], self.clamps.get(name))
            owner, _, attribute = name.rpartition(".")  # a new tensor: the graph's may be
            corrected = (self.fetch_attr(name) - shift).detach()  # the float model's own
            setattr(self.module.get_submodule(owner), attribute, nn.Parameter(corrected, False))
            output = output - shift.view(1, -1, *[1] * (output.dim() - 2))
            self.corrected += 1
        return output


def _bias_node(node: torch.fx.Node) -> torch.fx.Node | None:
    """The bias a convolution or linear node reads as a constant, if it does."""
    if node.op != "call_function" or str(node.target) not in _LAYERS or len(node.args) < 3:
        return None
    bias = node.args[2]
    return bias if isinstance(bias, torch.fx.Node) and bias.op == "get_attr" else None


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

    from mobilenets.export import pt2e_patterns

    pt2e_patterns.install()
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

    from mobilenets.export import pt2e_patterns

    pt2e_patterns.install()
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
