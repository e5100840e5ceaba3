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


def test_bench_references_are_torchvisions_segmenters_where_it_has_them() -> None:
    from mobilenets.export.references import reference_model

    library, reference = reference_model("lraspp_mobilenet_v3_large")
    assert library == "torchvision" and type(reference).__name__ == "LRASPP"
    assert reference_model("lraspp_mobilenet_v3_small") is None  # torchvision has none


def test_int8_of_a_segmenter_is_judged_by_miou_per_pixel(nuclei_run, tmp_path) -> None:
    """The ONNX export takes any image size; int8 is calibrated on the twelve training tiles
    and judged on the 65,536 held-out pixels by mIoU (the data's classes are the model's).
    Measured on a 2-core Xeon with AVX-512 VNNI: mIoU fp32 86.50%, int8 86.21%, pixel
    agreement 98.30%. With the AVX2 scheme's file (7-bit weights), 98.41% here and the same
    under QEMU as an AVX2-only Zen 3 (``benchmarks/int8_emulated.py``). The floors, 5 points
    and 93%, leave room for the training itself, whose float sums differ between CPU kinds."""
    from mobilenets.export.quantize import quantize_onnx

    fp32 = export_model(str(nuclei_run.out / "checkpoint.pt"), tmp_path / "m.onnx")
    report = quantize_onnx(fp32, tmp_path / "m.int8.onnx", "nuclei", margin=5.0)
    assert (report.guard, report.metric, report.unit) == ("accuracy", "mIoU", "pixels")
    assert report.images == 4 * 128 * 128 and report.calib_images == 12
    assert report.ok and report.int8_top1 >= report.fp32_top1 - 5.0
    assert report.fp32_top1 == pytest.approx(nuclei_run.miou, abs=1e-6)
    assert report.agreement >= 93.0
    assert "mIoU fp32" in report.format() and "pixels" in report.format()
