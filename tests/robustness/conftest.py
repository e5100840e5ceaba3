"""The bad-input suite's workspace, built once per session (see ``_workspace``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _workspace import Workspace, write_folder
from hypothesis import settings
from PIL import Image

# The readers' fuzz tests generate the same cases on every run and machine (CI gates on them),
# and keep no example database in the checkout.
settings.register_profile("mobilenets", database=None, derandomize=True, deadline=None)
settings.load_profile("mobilenets")


@pytest.fixture(scope="session")
def ws(tmp_path_factory) -> Workspace:
    import timm
    import torchvision

    from mobilenets.cli.main import main

    root = tmp_path_factory.mktemp("ws")
    folder = write_folder(root / "folder")
    run = root / "run"
    train = ["train", "--model", "mobilenet_v1", "--width-mult", "0.25", "--resolution", "32"]
    assert (
        main(
            [
                *train,
                "--data",
                str(folder),
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--no-progress",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    weights = root / "weights.safetensors"
    assert (
        main(["convert", "--from", "checkpoint", str(run / "checkpoint.pt"), "--out", str(weights)])
        == 0
    )
    onnx = root / "model.onnx"
    assert main(["export", str(run / "checkpoint.pt"), "--out", str(onnx)]) == 0
    image = root / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (60, 80, 3), np.uint8)).save(image)
    tv_state, timm_state = root / "tv_v3s.pth", root / "timm_v3s.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tv_state)
    torch.save(timm.create_model("mobilenetv3_small_050").state_dict(), timm_state)
    return Workspace(
        root, folder, run, run / "checkpoint.pt", weights, onnx, image, tv_state, timm_state
    )
