"""The README's and the manual's Python examples (run by pytest-markdown-docs) run in a folder
that holds the files they name: a run's checkpoint, a converted weights file, two photos."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def examples_folder(tmp_path_factory) -> Path:
    from PIL import Image
    from skimage import data

    from mobilenets.cli.main import main
    from mobilenets.training import TrainConfig, fit

    folder = tmp_path_factory.mktemp("examples")
    fit(
        TrainConfig(
            model="mobilenet_v1",
            width_mult=0.5,
            resolution=32,
            epochs=1,
            out=str(folder / "runs" / "v1"),
            progress=False,
        ),
        log=lambda _m: None,
    )
    weights = folder / "mobilenet_v2.safetensors"
    assert main(["convert", "torchvision:mobilenet_v2.IMAGENET1K_V1", "--out", str(weights)]) == 0
    Image.fromarray(data.astronaut()).save(folder / "a.png")
    Image.fromarray(data.chelsea()).save(folder / "photo.jpg")
    return folder


@pytest.fixture(autouse=True)
def _examples_run_in_their_folder(request, monkeypatch) -> None:
    if request.node.path.suffix == ".md":
        monkeypatch.chdir(request.getfixturevalue("examples_folder"))
