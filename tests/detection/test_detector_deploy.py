"""Detectors deployed: the network in the file, its resize, anchors, decoding and NMS around
it by the code PyTorch runs, so every runtime gives PyTorch's boxes."""

from __future__ import annotations

import pytest
import torch

from mobilenets.cli.main import main
from mobilenets.data.detection import build_detection_dataset
from mobilenets.training.evaluation import evaluate_checkpoint
from mobilenets.weights import load


@pytest.mark.parametrize("suffix", [".onnx", ".xml"])
def test_exported_detectors_find_pytorchs_boxes(tree_run, tmp_path, suffix) -> None:
    """ONNX Runtime and OpenVINO: the same number of boxes as PyTorch on real tiles and on an
    image of another size, boxes within 1e-3 px, scores within 1e-5, the same labels; eval
    through the file gives PyTorch's AP. (The wrapper is the runtimes' common code; an
    ExecuTorch ``.pte`` takes 18 s to lower here and gave the same boxes by hand: 3.1e-5 px.)"""
    checkpoint = tree_run.out / "checkpoint.pt"
    out = tmp_path / f"detector{suffix}"
    assert main(["export", str(checkpoint), "--out", str(out)]) == 0
    model, _ = load(checkpoint)
    exported, info = load(out)
    assert info.task == "detection" and info.classes == ("__background__", "tree")
    tiles = build_detection_dataset("trees", "val", 128)
    images = [tiles[i][0] for i in range(3)] + [torch.rand(3, 150, 90)]
    with torch.no_grad():
        expected, got = model(images), exported(images)
    for a, b in zip(expected, got, strict=True):
        assert len(a["boxes"]) == len(b["boxes"]) > 0
        top = slice(0, 50)  # the confident ones: further down, near-equal scores may swap
        assert (a["boxes"][top] - b["boxes"][top]).abs().max() < 1e-3
        assert (a["scores"][top] - b["scores"][top]).abs().max() < 1e-5
        assert torch.equal(a["labels"][top], b["labels"][top])
    reference = evaluate_checkpoint(checkpoint, progress=False)
    result = evaluate_checkpoint(out, progress=False)
    assert result.ap50 == pytest.approx(reference.ap50, abs=0.5)


def test_int8_of_a_detector_keeps_its_prediction_layers_and_refuses_a_vacuous_guard(
    learned_trees, tmp_path
) -> None:
    """quantize's detector defaults: minmax calibration and the prediction layers in fp32. On
    the trees SSDLite-V2 these keep AP50 at 21.66% against fp32's 22.61%, where an all-int8
    file falls to 1.0–1.4%. The test network (it learned its four tiles, 61 trees) keeps its
    AP50 and its boxes: fp32 58.55%, int8 59.00%, box agreement 100.00% on the VNNI Xeon; fp32
    63.64%, int8 64.46%, 100.00% with torch and oneDNN held to AVX2 (ONNX Runtime's kernels
    are the Xeon's either way); floors: fp32 above 30%, agreement 90%.

    The AP50 guard refuses to pass vacuously: with a margin at or above fp32's AP50, a file
    that finds nothing would be "within the margin"."""
    from mobilenets.export.quantize import quantize_onnx

    data = learned_trees.summary["config"]["data"]
    onnx_file, out = tmp_path / "d.onnx", tmp_path / "d.int8.onnx"
    assert main(["export", str(learned_trees.out / "checkpoint.pt"), "--out", str(onnx_file)]) == 0
    report = quantize_onnx(onnx_file, out, data)
    assert report.calibration == "minmax" and report.kept_fp32
    assert all(name.startswith("/head/") for name in report.kept_fp32)
    assert report.unit == "boxes" and report.metric == "AP50" and report.images == 61
    assert report.agreement >= 90.0
    assert report.ok and out.exists() and report.fp32_top1 > 30.0
    with pytest.warns(UserWarning, match="failed the accuracy guard"):
        wide = quantize_onnx(onnx_file, tmp_path / "w.int8.onnx", data, margin=report.fp32_top1)
    assert wide.vacuous and not wide.ok and "uninformative" in wide.format()
    assert (tmp_path / "w.int8.rejected.onnx").exists()
