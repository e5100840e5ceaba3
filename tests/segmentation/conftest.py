"""One real segmentation run on the nuclei, shared by the tests that need a trained segmenter."""

from __future__ import annotations

import pytest

from mobilenets.training.config import TrainConfig
from mobilenets.training.loop import FitResult, fit


@pytest.fixture(scope="session")
def nuclei_run(tmp_path_factory) -> FitResult:
    """LR-ASPP on V3-Small from scratch, 8 epochs of 64-px crops of the nuclei (about 10 s)."""
    out = tmp_path_factory.mktemp("nuclei") / "run"
    config = TrainConfig(
        model="lraspp_mobilenet_v3_small",
        data="nuclei",
        out=str(out),
        epochs=8,
        batch_size=16,
        resolution=64,
        schedule="poly",
        progress=False,
    )
    return fit(config)
