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
