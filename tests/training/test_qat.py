"""Quantization-aware training (``train --qat``): PT2E fake quantization inside the one training
loop, torchvision's schedule (BatchNorm statistics, then activation ranges, frozen), resumable,
and its int8 files (ExecuTorch, ONNX Runtime) judged against the run's fp32 network."""

from __future__ import annotations

import importlib
import json
import shutil
from dataclasses import replace

import pytest
import torch
from torch.nn import functional as F

from mobilenets.errors import CheckpointError, ConfigError
from mobilenets.export.quantize import quantize_onnx, quantize_pte
from mobilenets.saved.checkpoint import load_checkpoint
from mobilenets.training import TrainConfig, fit
from mobilenets.weights import load

QUIET = {"log": lambda _m: None}


def qat_config(weights, out, **kwargs) -> TrainConfig:
    settings = {"epochs": 2, "qat_bn_epochs": 1, "qat_observer_epochs": 1, "progress": False}
    return TrainConfig(weights=str(weights), qat=True, out=str(out), **{**settings, **kwargs})


def fake_quant_state(weights: dict) -> dict:
    return {k: v for k, v in weights.items() if "activation_post_process" in k}


def test_qat_follows_its_schedule_resumes_exactly_and_exports_int8(trained, tmp_path, monkeypatch):
    """The digits V2 (α 0.5, 32 px) fine-tuned 2 epochs with fake int8: epoch 2 runs with
    BatchNorm statistics and activation ranges frozen; a run killed after epoch 1 (what the
    uninterrupted run had written then: its first checkpoint, copied before epoch 2 began)
    and resumed ends with exactly the uninterrupted run's weights and scales; its ExecuTorch
    int8 program keeps the base run's accuracy (the QDQ ONNX path: the segmenter's test).
    Measured in the suite (a thread per worker; 360 held-out images) on the VNNI Xeon: base
    fp32 97.50%, fake int8 97.50%, the .pte 97.50%; with torch held to AVX2 (docs/cpu.md):
    96.94%, 97.50%, 97.50%. Floors 1.5 points (5 images) below the base. A broken conversion
    lands far lower."""
    base = trained["mobilenet_v2"] / "checkpoint.pt"
    fit_module = importlib.import_module("mobilenets.training.loop")
    snapshots = []
    real = fit_module._train_epoch

    def record(state, *args, **kwargs):
        row = real(state, *args, **kwargs)
        snapshots.append({k: v.clone() for k, v in state.model.state_dict().items()})
        return row

    real_save = fit_module.save_checkpoint

    def save_and_keep_the_first(state, path):  # the folder a kill after epoch 1 leaves
        real_save(state, path)
        if not (tmp_path / "killed").exists():
            (tmp_path / "killed").mkdir()
            shutil.copy(path, tmp_path / "killed" / path.name)

    monkeypatch.setattr(fit_module, "_train_epoch", record)
    monkeypatch.setattr(fit_module, "save_checkpoint", save_and_keep_the_first)
    whole = fit(qat_config(base, tmp_path / "whole"), **QUIET)
    monkeypatch.setattr(fit_module, "save_checkpoint", real_save)
    first, second = snapshots
    for name, tensor in first.items():  # frozen in epoch 2: BN statistics and int8 scales
        if name.endswith("observer_enabled"):
            assert tensor.item() == 1 and second[name].item() == 0, name
        elif name.endswith(("running_mean", "running_var")) or "activation_post_process" in name:
            assert torch.equal(tensor, second[name]), name
    assert not torch.equal(first["stem.conv.weight"], second["stem.conv.weight"])  # trained
    assert len(fake_quant_state(second)) > 100  # the quantizers' state is in the checkpoint
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["quantization"].startswith("int8 QAT") and summary["config"]["qat"]

    monkeypatch.setattr(fit_module, "_train_epoch", real)
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["epoch"] == 0  # after epoch 1
    with pytest.raises(ConfigError, match=r"different configuration: qat_observer_epochs: 1 → 2"):
        fit(qat_config(base, tmp_path / "killed", resume=True, qat_observer_epochs=2), **QUIET)
    fit(qat_config(base, tmp_path / "killed", resume=True), **QUIET)
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["model"]
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), name

    checkpoint = tmp_path / "whole" / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="quantization-aware-training checkpoint"):
        load(checkpoint)  # a float use of QAT weights: export, eval, predict, --weights
    base_top1 = json.loads((trained["mobilenet_v2"] / "summary.json").read_text())["val_top1"]
    assert whole.summary["val_top1"] >= base_top1 - 1.5  # fake int8, as the run evaluates it
    report = quantize_pte(str(checkpoint), tmp_path / "m.pte", "digits")  # no calibration
    assert report.ok and report.path == str(tmp_path / "m.pte"), report.format()
    assert report.int8_top1 >= base_top1 - 1.5, (report.int8_top1, base_top1)
    assert load(tmp_path / "m.pte")[1].source == load_checkpoint(checkpoint)["info"]["source"]
    with pytest.raises(ConfigError, match="--calib-method: post-training settings"):
        quantize_onnx(str(checkpoint), tmp_path / "x.onnx", "digits", calib_method="minmax")
    shutil.rmtree(tmp_path / "killed")


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v3_small"])
def test_the_qat_graph_with_its_quantizers_off_is_the_float_network(name, randomize_bn) -> None:
    """Each BatchNorm keeps its eps through ``prepare_qat_pt2e``'s conv + BN rewrite (which
    writes 1e-5; V3's is 1e-3): with trained-like variances down to 1e-6 the graph without fake
    quantization gives the float network's logits (relative difference measured: 8e-7 for
    V3-Small; NaN without the fix. V1's BatchNorm uses 1e-5: the same either way)."""
    from torchao.quantization.pt2e import disable_fake_quant, disable_observer

    from mobilenets.export.pt2e import prepare_qat
    from mobilenets.models import create_model

    model = randomize_bn(create_model(name, num_classes=10))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(1e-6, 1e-3)
    graph = prepare_qat(create_model(name, num_classes=10), torch.randn(2, 3, 32, 32))
    graph.load_state_dict(model.state_dict(), strict=False)  # the quantizers' state: fresh
    graph.eval().apply(disable_fake_quant)
    graph.apply(disable_observer)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        assert (graph(x) - expected).abs().max() <= 1e-4 * expected.abs().max()


@pytest.mark.parametrize("eps", [1e-5, 1e-3])
def test_the_int8_graph_computes_what_the_fake_int8_network_did(eps) -> None:
    """``convert_pt2e`` folds conv + BN with eps 1e-5 whatever the BatchNorm's, and the QAT
    pattern scales the weights it quantizes by ``running_var + eps``: both must be the
    BatchNorm's own eps in training and 1e-5 at conversion, the function unchanged. Two conv +
    BN (variances 1e-6 to 1e-2), random input: the converted graph's outputs within 2% of their
    span of the fake-int8 graph's (measured 1.4% at eps 1e-3 and at 1e-5; 67% at eps 1e-3
    before the fold was made exact, 30% with the weight scaling's eps left at 1e-5)."""
    from torch import nn

    from mobilenets.export.pt2e import convert_qat, prepare_qat

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16, eps=eps), nn.ReLU(),
        nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8, eps=eps),
    )  # fmt: skip
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_var.uniform_(1e-6, 1e-2)
            module.running_mean.uniform_(-0.1, 0.1)
    x = torch.randn(8, 3, 16, 16)
    graph = prepare_qat(model, x[:2]).eval()
    with torch.no_grad():
        graph(x)  # the observers see the batch
        fake, real, float_ = graph(x), convert_qat(graph)(x), model.eval()(x)
    span = float_.abs().max()
    assert (fake - real).abs().max() <= 0.02 * span
    assert torch.equal(model(x), float_)  # converting changed nothing of the float network
    with pytest.raises(ConfigError, match="--qat needs trained weights"):
        TrainConfig(qat=True)
    with pytest.raises(ConfigError, match="--qat cannot be combined with --ema-decay"):
        TrainConfig(qat=True, weights="w.safetensors", ema_decay=0.99)
    with pytest.raises(ConfigError, match=r"qat_bn_epochs \(5\) is more than epochs \(2\)"):
        TrainConfig(qat=True, weights="w.safetensors", epochs=2, qat_bn_epochs=5)
    with pytest.raises(ConfigError, match="qat_bn_epochs needs --qat"):
        TrainConfig(qat_bn_epochs=1)


def test_batchnorm_statistics_can_stay_frozen_from_the_first_qat_epoch() -> None:
    """``--qat-bn-epochs 0``: the start's BatchNorm statistics are never updated, for a start
    fine-tuned with ``--freeze-bn`` (it kept ImageNet's). Measured on the photos V2
    (``benchmarks/qat.py``, 1,560 held-out patches, VNNI Xeon): QAT re-estimating them for 2 of
    3 epochs ended 2.31 points below fp32 (agreement 86%); kept frozen, 0.28 below the fp32
    network given the same epochs (2.86 above its start: the fine-tuning goes on). The
    loop's phase for epoch 0 freezes them and a training step leaves them as they were; by
    default the same step moves them."""
    from torch import nn

    from mobilenets.export.pt2e import prepare_qat
    from mobilenets.training.loop import _qat_phase

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    x = torch.randn(4, 3, 12, 12)
    frozen = TrainConfig(weights="w.safetensors", qat=True, epochs=3, qat_bn_epochs=0)
    assert frozen.qat_phases == (0, 1)
    for config, moved in ((frozen, False), (replace(frozen, qat_bn_epochs=None), True)):
        graph = prepare_qat(model, x).train()
        before = {k: v.clone() for k, v in graph.state_dict().items() if "running_" in k}
        _qat_phase(graph, config, 0, lambda _m: None)
        graph(x)
        after = graph.state_dict()
        assert len(before) == 2 and moved == any(
            not torch.equal(v, after[k]) for k, v in before.items()
        )


def test_a_relu6_output_is_rounded_once_after_the_clamp_in_training_as_in_the_program(
    randomize_bn,
) -> None:
    """XNNPACK runs a convolution and its ReLU6 as one int8 operation, rounded after the clamp
    (the post-training graph is annotated so). The QAT graph must train what it runs: in the
    V2 (α 0.5) each of its 35 ReLU6 is followed by a fake quantizer and none sits between the
    BatchNorm and the clamp (XNNPACK's QAT annotation put one there: 35, each output rounded
    twice, once over the convolution's range, negatives included); converted, each clamp reads
    the convolution (BatchNorm folded) and is quantized after."""
    from mobilenets.export.pt2e import convert_qat, prepare_qat
    from mobilenets.models import create_model

    def fake_quantizer(node: torch.fx.Node) -> bool:
        return node.op == "call_module" and "activation_post_process" in str(node.target)

    model = randomize_bn(create_model("mobilenet_v2", num_classes=10, width_mult=0.5))
    graph = prepare_qat(model, torch.randn(2, 3, 32, 32))
    clamps = [n for n in graph.graph.nodes if "hardtanh" in str(n.target)]
    assert len(clamps) == 35
    assert not [n for n in clamps if fake_quantizer(n.args[0])]
    assert all(any(fake_quantizer(user) for user in n.users) for n in clamps)
    graph.eval()(torch.randn(8, 3, 32, 32))  # the observers see a batch
    converted = convert_qat(graph)
    clamps = [n for n in converted.graph.nodes if "hardtanh" in str(n.target)]
    assert len(clamps) == 35
    for clamp in clamps:
        assert "conv2d" in str(clamp.args[0].target), clamp.args[0]
        assert [str(u.target) for u in clamp.users] == [
            "quantized_decomposed.quantize_per_tensor.default"
        ]


def test_torchaos_conv_bn_patterns_are_captured_once_and_only_for_present_convolutions() -> None:
    """torchao captures each conv + BN pattern with ``torch.export`` on every QAT prepare and
    convert, for four kinds of convolution (about 0.28 s a pattern; 14.5 s to prepare and
    28.7 s to convert a two-layer network on the VNNI Xeon). With :mod:`pt2e_patterns`
    installed a 2-D network skips the other kinds' rewrites and a second prepare and convert in
    the process captures nothing new (0.14 s and 0.08 s measured), giving the same graph."""
    from torch import nn
    from torchao.quantization.pt2e import qat_utils

    from mobilenets.export import pt2e_patterns
    from mobilenets.export.pt2e import convert_qat, prepare_qat

    def network() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU6())

    x = torch.randn(4, 3, 12, 12)
    converted = []
    for _ in range(2):
        graph = prepare_qat(network(), x[:2])
        graph(x)
        converted.append(convert_qat(graph.eval()))
        if not converted[1:]:
            captured = dict(qat_utils._get_aten_graph_module_for_pattern.cache)
    assert pt2e_patterns.install() and captured  # the first capture filled the cache
    assert qat_utils._get_aten_graph_module_for_pattern.cache.keys() == captured.keys()
    assert converted[0].code == converted[1].code
    assert torch.equal(converted[0](x), converted[1](x))

    calls = []
    rewrite = pt2e_patterns._only_present_convolutions(lambda m, conv_fn: calls.append(conv_fn))
    for conv_fn in (F.conv1d, F.conv2d, F.conv_transpose1d, F.conv_transpose2d):
        rewrite(converted[0], conv_fn)
    assert calls == [F.conv2d]  # the only kind the graph holds
