"""One loader for the three saved forms, one record, one prediction path (PyTorch and ONNX
Runtime give the same top-5 on real photographs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mobilenets import NetworkInfo, create_model, load, predict
from mobilenets.cli.main import main
from mobilenets.export import export_onnx, fold_bn
from mobilenets.saved.checkpoint import load_checkpoint
from mobilenets.saved.onnx import OnnxModule
from mobilenets.saved.safetensors import read_weights
from mobilenets.training import TrainConfig, evaluate_checkpoint, fit


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict:
    """A run on real photo crops (scikit-image's samples), its weights file and ONNX export."""
    skimage_data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("saved")
    photos = {
        "cat": skimage_data.chelsea(),
        "coffee": skimage_data.coffee(),
        "rocket": skimage_data.rocket(),
    }
    rng = np.random.default_rng(0)
    for name, photo in photos.items():
        for split, count in (("train", 6), ("val", 3)):
            (root / "data" / split / name).mkdir(parents=True)
            for i in range(count):
                y, x = rng.integers(0, photo.shape[0] - 96), rng.integers(0, photo.shape[1] - 96)
                Image.fromarray(photo[y : y + 96, x : x + 96]).save(
                    root / "data" / split / name / f"{i}.png"
                )
    run = root / "run"
    config = TrainConfig(
        model="mobilenet_v3_small",
        width_mult=0.5,
        resolution=64,
        data=str(root / "data"),
        out=str(run),
        epochs=1,
        batch_size=6,
        progress=False,
    )
    fit(config, log=lambda _m: None)
    weights, onnx = root / "v3s.safetensors", root / "v3s.onnx"
    assert (
        main(["convert", "--from", "checkpoint", str(run / "checkpoint.pt"), "--out", str(weights)])
        == 0
    )
    assert main(["export", str(run / "checkpoint.pt"), "--out", str(onnx)]) == 0
    images = sorted((root / "data" / "val").rglob("*.png"))
    return {
        "checkpoint": run / "checkpoint.pt",
        "weights": weights,
        "onnx": onnx,
        "images": images,
        "root": root,
    }


def test_one_record_in_all_three_forms(saved) -> None:
    infos = [load(saved[k])[1] for k in ("checkpoint", "weights", "onnx")]
    assert infos[0] == infos[1] == infos[2]
    info = infos[0]
    assert isinstance(info, NetworkInfo)
    assert info.model == "mobilenet_v3_small" and info.input_size == 64
    assert info.classes == ("cat", "coffee", "rocket") and info.num_classes == 3
    assert info.kwargs == {"width_mult": 0.5, "num_classes": 3}
    state = load_checkpoint(saved["checkpoint"])
    assert NetworkInfo.from_dict(state["info"], "ckpt") == info  # written by the same code
    _, from_file = read_weights(saved["weights"])
    assert from_file == info


def test_loaded_networks_agree(saved) -> None:
    net_ckpt, info = load(saved["checkpoint"])
    net_weights, _ = load(saved["weights"])
    net_onnx, _ = load(saved["onnx"])
    assert isinstance(net_onnx, OnnxModule)
    x = torch.stack([info.eval_transform()(Image.open(p).convert("RGB")) for p in saved["images"]])
    with torch.no_grad():
        a, b, c = net_ckpt(x), net_weights(x), net_onnx(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-4)
    again = create_model("mobilenet_v3_small", weights=str(saved["weights"]), width_mult=0.5)
    torch.testing.assert_close(again(x), a, rtol=0, atol=0)


def test_pytorch_and_onnx_runtime_predict_alike(saved) -> None:
    """The shared path: one preprocessing, one softmax and top-k, two runtimes."""
    images = saved["images"]
    torch_results = predict(saved["weights"], images, topk=3)
    onnx_results = predict(saved["onnx"], images, topk=3)
    assert len(torch_results) == len(onnx_results) == 9
    for t, o in zip(torch_results, onnx_results, strict=True):
        assert [name for name, _ in t.top] == [name for name, _ in o.top]
        assert np.allclose([p for _, p in t.top], [p for _, p in o.top], atol=1e-4)
    assert predict(saved["checkpoint"], images, topk=3) == torch_results  # the same weights


def test_eval_runs_every_form(saved) -> None:
    results = [
        evaluate_checkpoint(saved[k], progress=False) for k in ("checkpoint", "weights", "onnx")
    ]
    assert results[0].images == 9 and results[0].top1 == results[1].top1 == results[2].top1


def test_export_of_a_bare_registry_model_records_it(tmp_path) -> None:
    model = create_model("mobilenet_v1", width_mult=0.25, num_classes=4)
    path = export_onnx(fold_bn(model), tmp_path / "m.onnx", 40)
    _, info = load(path)
    assert info.model == "mobilenet_v1" and info.input_size == 40 and info.classes == ()
