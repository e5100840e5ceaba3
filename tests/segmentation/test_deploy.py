"""Segmenters deployed: ONNX Runtime, ExecuTorch and OpenVINO give PyTorch's outputs by name;
predict writes a mask and an overlay; the runtime's eval equals PyTorch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mobilenets.cli.main import main
from mobilenets.data.segmentation import read_nuclei
from mobilenets.export.model_export import export_model
from mobilenets.saved.checkpoint import save_checkpoint
from mobilenets.saved.info import NetworkInfo
from mobilenets.weights import create_model, load


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory) -> str:
    """A V3-Small LR-ASPP (α 0.5, random weights, BN statistics randomised) saved as a
    checkpoint with its record (nuclei's classes)."""
    torch.manual_seed(0)
    model = create_model("lraspp_mobilenet_v3_small", width_mult=0.5, num_classes=2).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    info = NetworkInfo(
        "lraspp_mobilenet_v3_small",
        {"width_mult": 0.5, "num_classes": 2},
        input_size=64,
        classes=("background", "nucleus"),
        data="nuclei",
    )
    path = tmp_path_factory.mktemp("seg") / "checkpoint.pt"
    save_checkpoint({"model": model.state_dict(), "info": info.to_dict()}, path)
    return str(path)


@pytest.mark.parametrize("suffix", [".onnx", ".pte", ".xml"])
def test_exports_give_pytorchs_outputs_by_name(segmenter: str, tmp_path, suffix: str) -> None:
    model, _ = load(segmenter)
    out = export_model(segmenter, tmp_path / f"m{suffix}")
    runtime, info = load(out)
    assert info.task == "segmentation" and info.classes == ("background", "nucleus")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    got = runtime(x)
    assert list(got) == ["out"]
    torch.testing.assert_close(got["out"], expected["out"], rtol=1e-4, atol=1e-4)


def test_predict_writes_a_mask_and_an_overlay(segmenter: str, tmp_path, capsys) -> None:
    image, _ = read_nuclei()
    picture = tmp_path / "tile.png"
    Image.fromarray(image[384:, :160]).save(picture)
    out = tmp_path / "masks"
    capsys.readouterr()
    assert main(["predict", "--weights", segmenter, str(picture), "--out", str(out)]) == 0
    assert "tile.mask.png (background" in capsys.readouterr().out
    mask = np.asarray(Image.open(out / "tile.mask.png"))
    overlay = np.asarray(Image.open(out / "tile.overlay.png"))
    assert mask.shape == (128, 160) and set(np.unique(mask)) <= {0, 1}
    assert overlay.shape == (128, 160, 3)
    model, info = load(segmenter)
    x = torch.from_numpy(image[384:, :160]).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor(info.mean)[:, None, None], torch.tensor(info.std)[:, None, None]
    with torch.no_grad():
        expected = model(((x - mean) / std)[None])["out"][0].argmax(0)
    assert np.array_equal(mask, expected.numpy().astype(np.uint8))


def test_a_segmenter_without_out_and_a_classifier_api_call_are_one_clear_line(
    segmenter: str, tmp_path, capsys
) -> None:
    assert main(["predict", "--weights", segmenter, str(tmp_path / "x.png")]) == 2
    assert "is a segmentation network: give --out FOLDER" in capsys.readouterr().err
    from mobilenets.errors import ConfigError
    from mobilenets.weights import predict

    with pytest.raises(ConfigError, match="lraspp_mobilenet_v3_small is a segmentation network"):
        predict(segmenter, [str(tmp_path / "x.png")])
