"""One real detection run on the trees, shared by the tests that need a trained detector."""

from __future__ import annotations

import pytest

from mobilenets.training.config import TrainConfig
from mobilenets.training.loop import FitResult, fit


@pytest.fixture(scope="session")
def tree_run(tmp_path_factory) -> FitResult:
    """V3-Small SSDLite from scratch, 2 epochs of 128-px tree tiles (about 8 s)."""
    out = tmp_path_factory.mktemp("trees") / "run"
    config = TrainConfig(
        model="ssdlite_mobilenet_v3_small",
        data="trees",
        out=str(out),
        epochs=2,
        batch_size=16,
        resolution=128,
        progress=False,
    )
    return fit(config)
