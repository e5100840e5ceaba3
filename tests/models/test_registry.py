"""Registry contract: every variant builds, runs, trains, and reports feature maps truthfully."""

import pytest
import torch
from torch import nn

from mobilenets import create_model, list_models

ALL = list_models(task="classification")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_every_paper_variant() -> None:
    assert ALL == [
        "mobilenet_v1",
        "mobilenet_v1_conv",
        "mobilenet_v1_shallow",
        "mobilenet_v2",
        "mobilenet_v3_large",
        "mobilenet_v3_small",
    ]
    assert list_models("mobilenet_v3*") == ["mobilenet_v3_large", "mobilenet_v3_small"]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size", [32, 97, 224])
def test_forward_and_backward_at_any_resolution(name: str, size: int) -> None:
    model = create_model(name, num_classes=7)
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", ALL)
def test_features_only_matches_feature_info(name: str) -> None:
    model = create_model(name, features_only=True).eval()
    maps = model(torch.randn(1, 3, 224, 224))
    assert [info.reduction for info in model.feature_info] == [2, 4, 8, 16, 32]
    for info, fmap in zip(model.feature_info, maps, strict=True):
        assert fmap.shape[1] == info.channels
        assert fmap.shape[2] == fmap.shape[3] == 224 // info.reduction
    assert not hasattr(model, "classifier") or model.classifier is None


def test_out_indices_select_and_feature_maps_equal_the_trunk() -> None:
    full = create_model("mobilenet_v2").eval()
    backbone = create_model("mobilenet_v2", features_only=True, out_indices=(1, 4)).eval()
    backbone.load_state_dict(full.state_dict(), strict=False)
    x = torch.randn(1, 3, 96, 96)
    c2, c5 = backbone(x)
    assert [i.reduction for i in backbone.feature_info] == [4, 32]
    final, (c2_full, c5_full) = full.forward_intermediates(x, indices=[1, 4])
    torch.testing.assert_close(c5, c5_full)
    torch.testing.assert_close(c2, c2_full)
    torch.testing.assert_close(final, full.forward_features(x))  # V2: after the 1×1 → 1280
    assert c2.shape == (1, 24, 24, 24) and final.shape == (1, 1280, 3, 3)


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("mobilenet_v1", {}, 4_231_976),  # timm mobilenetv1_100
        ("mobilenet_v1", {"width_mult": 1.25}, 6_270_840),  # timm mobilenetv1_125
        ("mobilenet_v2", {}, 3_504_872),  # torchvision / timm
        ("mobilenet_v2", {"width_mult": 1.4}, 6_108_776),  # timm mobilenetv2_140
        ("mobilenet_v2", {"width_mult": 0.35}, 1_677_128),  # timm mobilenetv2_035
        ("mobilenet_v3_large", {}, 5_483_032),
        ("mobilenet_v3_small", {}, 2_542_856),
        ("mobilenet_v3_large", {"width_mult": 0.75}, 3_993_528),  # timm / paper: 4.0 M
        ("mobilenet_v3_small", {"width_mult": 0.75}, 2_041_872),  # timm / paper: 2.0 M
        ("mobilenet_v3_small", {"width_mult": 0.5, "channel_rules": "timm"}, 1_593_224),
        ("mobilenet_v3_large", {"minimalistic": True}, 3_924_288),  # timm tf_..._minimal_100
        ("mobilenet_v3_small", {"minimalistic": True}, 2_044_736),
        ("mobilenet_v3_large", {"width_mult": 0.75, "channel_rules": "torchvision"}, 3_377_576),
        ("mobilenet_v3_small", {"width_mult": 0.75, "channel_rules": "torchvision"}, 1_653_920),
        ("mobilenet_v3_large", {"width_mult": 0.5, "channel_rules": "torchvision"}, 1_734_576),
        ("mobilenet_v3_small", {"width_mult": 0.5, "channel_rules": "torchvision"}, 917_264),
    ],
)
def test_parameter_counts_equal_the_references(name: str, kwargs: dict, expected: int) -> None:
    assert n_params(create_model(name, **kwargs)) == expected


@pytest.mark.parametrize(
    ("ours", "kwargs", "theirs"),
    [
        ("mobilenet_v2", {}, "mobilenet_v2"),
        ("mobilenet_v2", {"width_mult": 0.5}, "mobilenet_v2"),
        ("mobilenet_v3_large", {}, "mobilenet_v3_large"),
        ("mobilenet_v3_small", {}, "mobilenet_v3_small"),
    ],
)
@pytest.mark.parametrize("width_mult", [1.0, 0.75, 0.5])
def test_torchvision_counts_with_torchvision_rules(
    ours: str, kwargs: dict, theirs: str, width_mult: float
) -> None:
    torchvision = pytest.importorskip("torchvision")
    ref = getattr(torchvision.models, theirs)(width_mult=width_mult)
    extra = {"channel_rules": "torchvision"} if ours.startswith("mobilenet_v3") else {}
    model = create_model(ours, **{**kwargs, "width_mult": width_mult, **extra})
    assert n_params(model) == n_params(ref)


@pytest.mark.parametrize(
    ("timm_name", "ours", "kwargs"),
    [
        ("mobilenetv1_100", "mobilenet_v1", {}),
        ("mobilenetv2_050", "mobilenet_v2", {"width_mult": 0.5}),
        ("mobilenetv3_large_075", "mobilenet_v3_large", {"width_mult": 0.75}),
        ("mobilenetv3_small_075", "mobilenet_v3_small", {"width_mult": 0.75}),
        (
            "mobilenetv3_small_050",
            "mobilenet_v3_small",
            {"width_mult": 0.5, "channel_rules": "timm"},
        ),
    ],
)
def test_timm_counts_and_feature_channels(timm_name: str, ours: str, kwargs: dict) -> None:
    timm = pytest.importorskip("timm")
    ref = timm.create_model(timm_name)
    model = create_model(ours, **kwargs)
    assert n_params(model) == n_params(ref)
    assert [i.channels for i in model.feature_info] == [f["num_chs"] for f in ref.feature_info]


def test_v3_paper_head_is_unscaled_but_torchvision_scales_it() -> None:
    paper = create_model("mobilenet_v3_small", width_mult=0.75)
    tv = create_model("mobilenet_v3_small", width_mult=0.75, channel_rules="torchvision")
    assert paper.classifier.in_features == 1024
    assert tv.classifier.in_features == 768


def test_v3_reduced_tail_halves_the_last_stage() -> None:
    model = create_model("mobilenet_v3_large", reduced_tail=True)
    assert model.feature_info[-1].channels == 480
    assert model.feature_info[3].channels == 112
    assert model.classifier.in_features == 640
    assert n_params(model) == 2_569_352  # torchvision mobilenet_v3_large(reduced_tail=True)


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "mobilenet_v3_small"])
def test_v3_reduced_tail_equals_torchvision(name: str) -> None:
    torchvision = pytest.importorskip("torchvision")
    ref = getattr(torchvision.models, name)(reduced_tail=True)
    assert n_params(create_model(name, reduced_tail=True)) == n_params(ref)


def test_v1_conv_baseline_and_shallow_structure() -> None:
    conv = create_model("mobilenet_v1_conv")
    assert all(block.conv.groups == 1 and block.conv.kernel_size == (3, 3) for block in conv.blocks)
    assert len(create_model("mobilenet_v1_shallow").blocks) == 8


def test_v1_uses_relu_as_in_the_paper_and_relu6_on_request() -> None:
    assert isinstance(create_model("mobilenet_v1").stem.act, nn.ReLU)
    assert isinstance(create_model("mobilenet_v1", act="relu6").stem.act, nn.ReLU6)


def test_create_model_records_how_it_was_built() -> None:
    model = create_model("mobilenet_v1", width_mult=0.5, num_classes=10)
    assert model.model_name == "mobilenet_v1"
    assert model.model_kwargs == {"width_mult": 0.5, "num_classes": 10}


def test_in_chans_changes_the_stem() -> None:
    model = create_model("mobilenet_v2", in_chans=1, num_classes=3)
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 3)


# --- bad input: each error names the bad value and what is allowed -------------------------


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(
        ValueError, match=r"unknown model 'mobilenet_v3_lage'.*'mobilenet_v3_large'"
    ):
        create_model("mobilenet_v3_lage")


def test_misspelt_keyword_is_an_error_not_ignored() -> None:
    with pytest.raises(TypeError, match=r"'widht_mult'.*Did you mean 'width_mult'"):
        create_model("mobilenet_v3_large", widht_mult=0.5)


@pytest.mark.parametrize("alpha", [0, -0.5, float("nan"), float("inf")])
def test_bad_width_mult(alpha: float) -> None:
    with pytest.raises(ValueError, match=r"width_mult \(α\) must be a finite number > 0"):
        create_model("mobilenet_v1", width_mult=alpha)


def test_width_mult_must_be_a_number() -> None:
    with pytest.raises(TypeError, match="width_mult must be a number"):
        create_model("mobilenet_v2", width_mult="0.5")


@pytest.mark.parametrize("name", ALL)
def test_input_under_32_px_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"input 31×64 px is too small.*≥ 32×32"):
        create_model(name)(torch.randn(1, 3, 31, 64))


def test_wrong_channel_count_is_refused() -> None:
    with pytest.raises(ValueError, match=r"expects 3-channel images, got 1 channels.*in_chans=1"):
        create_model("mobilenet_v1")(torch.randn(1, 1, 64, 64))


def test_bad_channel_rules_and_out_indices() -> None:
    with pytest.raises(ValueError, match=r"channel_rules must be one of \('paper', 'timm'"):
        create_model("mobilenet_v3_small", channel_rules="tf")
    with pytest.raises(ValueError, match=r"feature index 5 is out of range; allowed: 0..4"):
        create_model("mobilenet_v1", features_only=True, out_indices=(5,))
