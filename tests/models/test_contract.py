"""The model contract that timm and torchvision users rely on, over the whole registry.

Modelled on timm's ``tests/test_models.py`` (``test_model_forward_torchscript``,
``test_model_forward_fx``, ``test_model_forward_intermediates``, ``test_model_default_cfgs``)
and torchvision's ``test/test_models.py`` (``test_classification_model`` with its scripting and
FX checks, ``test/test_backbone_utils.py`` for ``create_feature_extractor``). Small inputs
(64 px) and small widths keep it fast.
"""

from __future__ import annotations

import functools
import io

import pytest
import torch
from torch import nn

from mobilenets import create_model, list_models
from mobilenets.errors import ConfigError
from mobilenets.models import get_model

NAMES = list_models(task="classification")


def small(name: str, **kwargs) -> nn.Module:
    width = 0.25 if name.startswith("mobilenet_v1") else 0.35
    torch.manual_seed(0)
    model = create_model(name, width_mult=width, num_classes=7, **kwargs)
    for module in model.modules():  # eval outputs that depend on every BN tensor
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def outputs(value) -> list[torch.Tensor]:
    return list(value) if isinstance(value, list | tuple) else [value]


def assert_same(a, b, atol: float = 1e-5) -> None:
    for x, y in zip(outputs(a), outputs(b), strict=True):
        torch.testing.assert_close(x, y, rtol=atol, atol=atol)


@pytest.mark.parametrize("features_only", [False, True], ids=["classifier", "features"])
@pytest.mark.parametrize("name", NAMES)
def test_torchscript_and_its_saved_module(name: str, features_only: bool) -> None:
    model = small(name, features_only=features_only)
    x = torch.randn(2, 3, 64, 64)
    scripted = torch.jit.script(model)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    with torch.no_grad():
        expected = model(x)
        assert_same(scripted(x), expected)
        assert_same(loaded(x), expected)


@pytest.mark.parametrize("features_only", [False, True], ids=["classifier", "features"])
@pytest.mark.parametrize("name", NAMES)
def test_fx_symbolic_trace(name: str, features_only: bool) -> None:
    model = small(name, features_only=features_only)
    graph = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_same(graph(x), model(x))
    assert any(
        n.target.__name__ == "check_image_batch"
        for n in graph.graph.nodes
        if n.op == "call_function"
    )  # the input check stays, as a leaf


@pytest.mark.parametrize("name", NAMES)
def test_torchvision_feature_extractor(name: str) -> None:
    from torchvision.models.feature_extraction import (
        create_feature_extractor,
        get_graph_node_names,
    )

    model = small(name)
    _, eval_nodes = get_graph_node_names(model)
    wanted = [f.module for f in model.feature_info]
    # each feature is the last graph node inside its module (get_graph_node_names' names)
    last_of = {m: [n for n in eval_nodes if n == m or n.startswith(m + ".")][-1] for m in wanted}
    extractor = create_feature_extractor(model, return_nodes={last_of[m]: m for m in wanted})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got = extractor(x)
        expected = model.forward_intermediates(x, intermediates_only=True)
    assert list(got) == wanted
    assert_same(list(got.values()), expected)


@pytest.mark.parametrize("features_only", [False, True], ids=["classifier", "features"])
@pytest.mark.parametrize("name", NAMES)
def test_torch_export_with_dynamic_batch_and_size(name: str, features_only: bool) -> None:
    from torch.export import Dim, export

    model = small(name, features_only=features_only)
    dims = {
        0: Dim("batch", min=1, max=32),
        2: Dim("h", min=33, max=512),
        3: Dim("w", min=33, max=512),
    }
    program = export(model, (torch.randn(2, 3, 64, 64),), dynamic_shapes={"x": dims})
    exported = program.module()
    for shape in ((1, 3, 33, 40), (3, 3, 97, 64)):
        x = torch.randn(*shape)
        with torch.no_grad():
            assert_same(exported(x), model(x))


def test_torch_compile_captures_the_whole_graph() -> None:
    """fullgraph=True: no graph break anywhere (inductor's C++ build takes ~54 s here, so the
    suite compiles with the aot_eager backend: the same capture, no code generation)."""
    model = small("mobilenet_v3_small")
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_same(compiled(x), model(x))


def test_input_checks_still_hold_in_eager_mode() -> None:
    model = small("mobilenet_v2")
    with pytest.raises(ConfigError, match=r"expected a 4-D batch"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ConfigError, match=r"31×64 px is too small"):
        model(torch.randn(1, 3, 31, 64))
    with pytest.raises(ConfigError, match=r"expects 3-channel images"):
        torch.fx.symbolic_trace(model)(torch.randn(1, 1, 64, 64))


@pytest.mark.parametrize("name", NAMES)
def test_forward_intermediates_equal_features_only(name: str) -> None:
    model = small(name)
    backbone = small(name, features_only=True)
    backbone.load_state_dict(model.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        assert_same(intermediates, backbone(x), atol=0)
        assert_same(final, model.forward_features(x), atol=0)
        assert_same(model.forward_head(final), model(x), atol=0)
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
    assert_same(last_two, intermediates[-2:], atol=0)
    assert final.shape[1] == model.num_features


EXPECTED_SIZES = {  # (num_features, head_hidden_size), as timm's equivalents report them
    "mobilenet_v1": ("mobilenetv1_100", {"act": "relu6", "bn_eps": 1e-5}),
    "mobilenet_v2": ("mobilenetv2_100", {}),
    "mobilenet_v3_large": ("mobilenetv3_large_100", {"channel_rules": "timm"}),
    "mobilenet_v3_small": ("mobilenetv3_small_100", {"channel_rules": "timm"}),
}


@pytest.mark.parametrize("name", list(EXPECTED_SIZES))
def test_timm_sizes_classifier_and_config(name: str) -> None:
    timm = pytest.importorskip("timm")
    timm_name, kwargs = EXPECTED_SIZES[name]
    ref = timm.create_model(timm_name)
    model = create_model(name, **kwargs)
    assert (model.num_features, model.head_hidden_size) == (ref.num_features, ref.head_hidden_size)
    assert model.get_classifier() is model.classifier
    model.reset_classifier(5)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    assert model.model_kwargs["num_classes"] == 5 and model.pretrained_cfg["num_classes"] == 5
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, model.head_hidden_size)
    config = timm.data.resolve_data_config(model=model)
    assert config["mean"] == (0.485, 0.456, 0.406) and config["input_size"] == (3, 224, 224)
    assert config["crop_pct"] == 0.875 and config["interpolation"] == "bilinear"


def test_timm_reads_our_feature_info() -> None:
    timm = pytest.importorskip("timm")
    backbone = create_model("mobilenet_v3_large", features_only=True, out_indices=(1, 2, 4))
    info = timm.models.FeatureInfo(backbone.feature_info, out_indices=(0, 1, 2))
    assert info.channels() == backbone.feature_info.channels() == [24, 40, 960]
    assert info.reduction() == backbone.feature_info.reduction() == [4, 8, 32]
    assert backbone.feature_info.module_name() == ["blocks.2", "blocks.5", "blocks.15"]
    assert [f.channels for f in backbone.feature_info] == [24, 40, 960]


def test_pretrained_cfg_comes_from_a_weights_file(tmp_path) -> None:
    timm = pytest.importorskip("timm")
    torchvision = pytest.importorskip("torchvision")
    from mobilenets.weights import convert_file

    src = tmp_path / "mobilenet_v2-7ebf99e0.pth"  # torchvision's IMAGENET1K_V2 file name
    torch.save(torchvision.models.mobilenet_v2().state_dict(), src)
    convert_file("torchvision", src, tmp_path / "v2.safetensors", model="mobilenet_v2")
    model = create_model("mobilenet_v2", weights=str(tmp_path / "v2.safetensors"))
    config = timm.data.resolve_data_config(model=model)
    assert config["crop_pct"] == pytest.approx(224 / 232)  # torchvision's resize for V2 weights
    assert model.pretrained_cfg["label_names"][0] == "tench"


def test_grad_checkpointing_recomputes_with_equal_gradients() -> None:
    """Equal gradients; the activations kept for backward (every tensor autograd saves,
    counted through saved-tensor hooks) shrink, at 224 px and batch 8."""
    x = torch.randn(8, 3, 224, 224)

    def run(checkpointing: bool) -> tuple[dict, int]:
        torch.manual_seed(0)
        model = create_model("mobilenet_v2")
        model.set_grad_checkpointing(checkpointing)
        saved = {"bytes": 0, "peak": 0}

        def pack(t: torch.Tensor) -> torch.Tensor:
            saved["bytes"] += t.numel() * t.element_size()
            saved["peak"] = max(saved["peak"], saved["bytes"])
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model(x).square().mean()
        loss.backward()
        return {n: p.grad for n, p in model.named_parameters()}, saved["peak"]

    plain_grads, plain_bytes = run(False)
    ckpt_grads, ckpt_bytes = run(True)
    for key, grad in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[key], grad, rtol=1e-4, atol=1e-6)
    assert ckpt_bytes < plain_bytes / 10  # 1 input per block kept instead of every activation


def test_dilated_v3_equals_torchvision() -> None:
    torchvision = pytest.importorskip("torchvision")
    from mobilenets.weights import convert_state_dict, torchvision_target

    torch.manual_seed(0)
    theirs = torchvision.models.mobilenet_v3_large(dilated=True).eval()
    for module in theirs.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
    target = torchvision_target("mobilenet_v3_large")
    target.kwargs["dilated"] = True
    ours = convert_state_dict(theirs.state_dict(), target)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
        assert ours.forward_features(x).shape[-1] == 96 // 16  # output stride 16
    assert ours.feature_info.reduction() == [2, 4, 8, 16]


def test_norm_layer_and_get_model() -> None:
    eps = create_model("mobilenet_v2", bn_eps=1e-3)
    norm = get_model("mobilenet_v2", norm_layer=functools.partial(nn.BatchNorm2d, eps=1e-3))
    norm.load_state_dict(eps.state_dict())
    x = torch.randn(1, 3, 64, 64)
    eps.eval(), norm.eval()
    with torch.no_grad():
        torch.testing.assert_close(norm(x), eps(x), rtol=0, atol=0)
    group = create_model("mobilenet_v3_small", norm_layer=lambda c: nn.GroupNorm(1, c))
    assert isinstance(group.stem.bn, nn.GroupNorm)
    assert group(torch.randn(2, 3, 64, 64)).shape == (2, 1000)
