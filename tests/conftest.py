"""Shared fixtures: deterministic, CPU-only, small thread count."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


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
