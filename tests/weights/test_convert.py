"""Converted torchvision/timm models give the source's outputs; files round-trip bit-exactly;
bad input fails with the file, the keys and the shapes."""

import pytest
import torch
from torch import nn

from mobilenets import create_model
from mobilenets.cli.main import main
from mobilenets.saved.safetensors import weights_metadata
from mobilenets.weights import (
    convert_file,
    convert_state_dict,
    load_weights,
    read_weights,
    save_weights,
    timm_target,
    torchvision_target,
)

torchvision = pytest.importorskip("torchvision")


def assert_same_outputs(ours: nn.Module, theirs: nn.Module) -> None:
    for size in (224, 160):
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x))


TORCHVISION = [
    ("mobilenet_v2", 1.0, False),
    ("mobilenet_v2", 0.5, False),
    ("mobilenet_v3_large", 1.0, False),
    ("mobilenet_v3_large", 0.75, False),
    ("mobilenet_v3_large", 1.0, True),
    ("mobilenet_v3_small", 1.0, False),
    ("mobilenet_v3_small", 0.5, False),
]


@pytest.mark.parametrize(("name", "width", "reduced_tail"), TORCHVISION)
def test_torchvision_transplant_gives_equal_outputs(
    name, width, reduced_tail, randomize_bn
) -> None:
    kwargs = {"reduced_tail": reduced_tail} if reduced_tail else {}
    theirs = randomize_bn(getattr(torchvision.models, name)(width_mult=width, **kwargs))
    ours = convert_state_dict(
        theirs.state_dict(), torchvision_target(name, width, 1000, reduced_tail)
    )
    assert_same_outputs(ours, theirs)


TIMM = [
    "mobilenetv1_100",
    "mobilenetv1_125",
    "mobilenetv2_035",
    "mobilenetv2_050",
    "mobilenetv2_100",
    "mobilenetv2_140",
    "mobilenetv3_large_075",
    "mobilenetv3_large_100",
    "mobilenetv3_small_050",
    "mobilenetv3_small_075",
    "mobilenetv3_small_100",
]


@pytest.mark.parametrize("name", TIMM)
def test_timm_transplant_gives_equal_outputs(name: str, randomize_bn) -> None:
    timm = pytest.importorskip("timm")
    theirs = randomize_bn(timm.create_model(name))
    ours = convert_state_dict(theirs.state_dict(), timm_target(name))
    assert_same_outputs(ours, theirs)


def test_safetensors_round_trip_is_bit_exact(tmp_path, randomize_bn) -> None:
    theirs = randomize_bn(torchvision.models.mobilenet_v3_small())
    src = tmp_path / "tv.pth"
    torch.save(theirs.state_dict(), src)
    out = tmp_path / "v3s.safetensors"
    info = convert_file("torchvision", src, out, model="mobilenet_v3_small")
    assert info.classes[0] == "tench" and len(info.classes) == 1000
    assert info.resize is None  # an unknown file name: input / 0.875
    loaded = load_weights(out)
    for (k, a), b in zip(loaded.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    again = tmp_path / "again.safetensors"
    save_weights(loaded, again, loaded.network_info)
    first, _ = read_weights(out)
    second, _ = read_weights(again)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    via_registry = create_model("mobilenet_v3_small", weights=str(out))
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(via_registry(x), theirs(x), rtol=0, atol=0)


def test_other_num_classes_drops_only_the_classifier(tmp_path, randomize_bn) -> None:
    out = tmp_path / "v2.safetensors"
    src = tmp_path / "mobilenet_v2-7ebf99e0.pth"  # torchvision's IMAGENET1K_V2 file name
    torch.save(randomize_bn(torchvision.models.mobilenet_v2()).state_dict(), src)
    info = convert_file("torchvision", src, out, model="mobilenet_v2")
    assert info.resize == 232  # torchvision evaluates IMAGENET1K_V2 at resize 232, crop 224
    assert load_weights(out).network_info.resize == 232
    model = create_model("mobilenet_v2", weights=str(out), num_classes=10)
    assert model.classifier.out_features == 10
    full = load_weights(out)
    torch.testing.assert_close(model.stem.conv.weight, full.stem.conv.weight)
    with pytest.raises(ValueError, match=r"holds mobilenet_v2 weights, not mobilenet_v1"):
        create_model("mobilenet_v1", weights=str(out))
    with pytest.raises(ValueError, match=r"width_mult=1.0 in the file, 0.5 asked"):
        create_model("mobilenet_v2", weights=str(out), width_mult=0.5)
    with pytest.raises(TypeError, match=r"'widht_mult'.*Did you mean 'width_mult'"):
        create_model("mobilenet_v2", weights=str(out), widht_mult=0.5)


def test_bad_inputs_are_named(tmp_path) -> None:
    good = tmp_path / "v2.pth"
    state = torchvision.models.mobilenet_v2().state_dict()
    torch.save(state, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"truncated\.pth is truncated or not a state dict"):
        convert_file("torchvision", truncated, tmp_path / "x.safetensors", model="mobilenet_v2")
    with pytest.raises(
        ValueError, match=r"not a torchvision state dict of mobilenet_v3_large.*missing \d+ keys"
    ):
        convert_file("torchvision", good, tmp_path / "x.safetensors", model="mobilenet_v3_large")
    with pytest.raises(
        ValueError,
        match=r"features.0.0.weight \(32, 3, 3, 3\) vs our stem.conv.weight \(16, 3, 3, 3\)",
    ):
        convert_file(
            "torchvision", good, tmp_path / "x.safetensors", model="mobilenet_v2", width_mult=0.5
        )
    missing = dict(state)
    missing.pop("features.3.conv.1.1.running_var")
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing 1 keys \(features.3.conv.1.1.running_var\)"):
        convert_file(
            "torchvision",
            tmp_path / "missing.pth",
            tmp_path / "x.safetensors",
            model="mobilenet_v2",
        )
    assert not (tmp_path / "x.safetensors").exists()  # never a partial result


def test_bad_weights_files(tmp_path) -> None:
    src = tmp_path / "v3.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), src)
    out = tmp_path / "v3.safetensors"
    convert_file("torchvision", src, out, model="mobilenet_v3_small")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(out.read_bytes()[:-1000])
    with pytest.raises(ValueError, match=r"cut\.safetensors is truncated or not safetensors"):
        load_weights(cut)
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not mobilenets weights"):
        load_weights(tmp_path / "plain.safetensors")
    tensors, info = read_weights(out)
    tensors["stem.conv.weight"] = torch.zeros(8, 3, 3, 3)
    tensors.pop("classifier.bias")
    from safetensors.torch import save_file as save

    save(tensors, str(tmp_path / "wrong.safetensors"), metadata=weights_metadata(info))
    with pytest.raises(
        ValueError,
        match=r"missing keys \['classifier.bias'\].*stem.conv.weight: "
        r"file \(8, 3, 3, 3\), model \(16, 3, 3, 3\)",
    ):
        load_weights(tmp_path / "wrong.safetensors")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("tf_mobilenetv2_100", "its tf_ ports"),
        ("mobilenetv3_rw", "not the papers' networks"),
    ],
)
def test_unsupported_timm_models_say_why(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        timm_target(name)


def test_cli_convert_and_predict(tmp_path, capsys, randomize_bn) -> None:
    from PIL import Image

    src = tmp_path / "tv.pth"
    torch.save(randomize_bn(torchvision.models.mobilenet_v3_small()).state_dict(), src)
    out = tmp_path / "v3s.safetensors"
    assert (
        main(
            [
                "convert",
                "--from",
                "torchvision",
                str(src),
                "--model",
                "mobilenet_v3_small",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    image = tmp_path / "photo.png"
    Image.new("RGB", (300, 200), (200, 120, 40)).save(image)
    assert main(["predict", "--weights", str(out), str(image)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-6] == str(image) and len(lines[-5:]) == 5 and "%" in lines[-1]
    assert main(["predict", "--weights", str(out), str(tmp_path / "none.png")]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert main(["convert", "--from", "timm", str(src), "--out", str(out)]) == 2


def test_keys_pair_by_name_not_by_order(tmp_path, randomize_bn) -> None:
    """A reordered state dict converts to the same network; a .safetensors source (keys come
    back sorted) converts like the .pth of the same weights."""
    theirs = randomize_bn(torchvision.models.mobilenet_v2())
    state = theirs.state_dict()
    keys = list(state)
    block5 = [k for k in keys if k.startswith("features.5.")]
    block6 = [k for k in keys if k.startswith("features.6.")]
    rest = [k for k in keys if k not in block5 and k not in block6]
    at = keys.index(block5[0])
    reordered = {k: state[k] for k in rest[:at] + block6 + block5 + rest[at:]}
    ours = convert_state_dict(reordered, torchvision_target("mobilenet_v2"))
    assert_same_outputs(ours, theirs)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "tv.safetensors"))
    torch.save(state, tmp_path / "tv.pth")
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    convert_file("torchvision", tmp_path / "tv.safetensors", a, model="mobilenet_v2")
    convert_file("torchvision", tmp_path / "tv.pth", b, model="mobilenet_v2")
    assert_same_outputs(load_weights(a), theirs)
    first, _ = read_weights(a)
    second, _ = read_weights(b)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_swapped_blocks_and_wrong_source_are_refused_by_name(tmp_path) -> None:
    timm = pytest.importorskip("timm")
    state = torchvision.models.mobilenet_v2().state_dict()
    swapped = dict(state)  # torchvision's blocks 3 (24 channels out) and 4 (32 out) exchanged
    for k in [k for k in state if k.startswith("features.3.")]:
        other = k.replace("features.3.", "features.4.", 1)
        swapped[k], swapped[other] = state[other], state[k]
    with pytest.raises(
        ValueError,
        match=r"features.3.conv.2.weight \(32, 144, 1, 1\) vs our blocks.2.project.conv.weight",
    ):
        convert_state_dict(swapped, torchvision_target("mobilenet_v2"))
    timm_state = timm.create_model("mobilenetv3_large_100").state_dict()
    with pytest.raises(ValueError, match=r"looks like a timm state dict: use --from timm"):
        convert_state_dict(timm_state, torchvision_target("mobilenet_v3_large"))
    tv_state = torchvision.models.mobilenet_v3_large().state_dict()
    with pytest.raises(ValueError, match=r"unexpected keys \(features.0.0.weight"):
        convert_state_dict(tv_state, timm_target("mobilenetv3_large_100"))
    extra = {**state, "features.19.weight": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"1 unexpected keys \(features.19.weight\)"):
        convert_state_dict(extra, torchvision_target("mobilenet_v2"))
    ints = {**state, "features.0.0.weight": state["features.0.0.weight"].long()}
    with pytest.raises(ValueError, match=r"features.0.0.weight has dtype torch.int64"):
        convert_state_dict(ints, torchvision_target("mobilenet_v2"))
    nan = {**state, "classifier.1.bias": torch.full((1000,), float("nan"))}
    with pytest.raises(ValueError, match=r"NaN or inf in classifier.1.bias"):
        convert_state_dict(nan, torchvision_target("mobilenet_v2"))


def test_source_hyperparameters_are_checked() -> None:
    from mobilenets.weights.convert import Target, check_source_settings

    model = create_model("mobilenet_v3_small", bn_eps=1e-5)
    check_source_settings(model, Target("mobilenet_v3_small", {"bn_eps": 1e-5}, "timm"))
    with pytest.raises(ValueError, match=r"BN epsilon of stem.bn.*not the source's 0.001"):
        check_source_settings(model, Target("mobilenet_v3_small", {"bn_eps": 1e-3}, "timm"))
