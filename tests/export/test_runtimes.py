"""The runtime layer (issue 24): every backend prepared and called one way, and every exported
file read back with all its outputs, named as exported."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mobilenets.export import export_onnx
from mobilenets.export.runtimes import prepare, torch_threads
from mobilenets.models import registry
from mobilenets.saved.info import NetworkInfo
from mobilenets.weights import load


class TwoHeads(nn.Module):
    """A network with two named outputs, as torchvision's segmentation models return them
    (``out`` and an auxiliary head)."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1))
        self.out = nn.Conv2d(8, num_classes, 1)
        self.aux = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.body(x)
        return {"out": self.out(features), "aux": self.aux(features).mean((2, 3))}


@pytest.fixture
def two_heads(monkeypatch) -> tuple[nn.Module, NetworkInfo]:
    entry = registry.ModelEntry("two_heads", TwoHeads, "a test network", input_size=32)
    monkeypatch.setitem(registry._REGISTRY, "two_heads", entry)
    torch.manual_seed(0)
    model = registry.create_model("two_heads").eval()
    return model, NetworkInfo("two_heads", {}, 32, mean=(0.5,) * 3, std=(0.25,) * 3)


def _check(got: object, expected: dict[str, torch.Tensor], atol: float = 1e-4) -> None:
    assert isinstance(got, dict) and list(got) == list(expected)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, atol=atol, rtol=1e-4)


def test_a_two_output_network_through_every_runtime(two_heads, tmp_path) -> None:
    """Export → load → call on ONNX Runtime, ExecuTorch and OpenVINO: both outputs, by name,
    equal to PyTorch's; the record lists them."""
    model, info = two_heads
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    onnx_path = export_onnx(model, tmp_path / "m.onnx", info=info)
    network, record = load(onnx_path)
    assert network.output_names == ["out", "aux"] and record.model == "two_heads"
    _check(network(x), expected)

    pytest.importorskip("executorch")
    from mobilenets.export.edge import export_openvino, export_pte

    export_pte(model, tmp_path / "m.pte", info)  # checked against PyTorch before it is kept
    program, _ = load(tmp_path / "m.pte")
    assert program.record["outputs"] == ["out", "aux"]
    _check(program(x), expected)

    pytest.importorskip("openvino")
    export_openvino(onnx_path, tmp_path / "m.xml", check=model)
    ir, _ = load(tmp_path / "m.xml")
    assert ir.output_names == ["out", "aux"] and ir.record["outputs"] == ["out", "aux"]
    _check(ir(x), expected)


@pytest.mark.parametrize("backend", ["eager", "channels_last", "ort", "ort_int8", "openvino"])
def test_every_backend_is_prepared_and_called_one_way(two_heads, tmp_path, backend) -> None:
    """One construction per backend: the same call as bench, its children, NetAdapt's latency
    table and the sweep time; fp32 backends give PyTorch's outputs."""
    if backend.startswith("openvino"):
        pytest.importorskip("openvino")
    model, _ = two_heads
    x = torch.randn(1, 3, 32, 32)
    before = torch.get_num_threads()
    with torch_threads(1):
        call = prepare(model, backend, x, workdir=tmp_path, tag="m", threads=1)
        got = call()
    assert torch.get_num_threads() == before  # the caller's thread count restored
    if backend in ("eager", "channels_last", "ort", "openvino"):
        with torch.no_grad():
            expected = model(x)
        got = {k: torch.as_tensor(v) for k, v in got.items()} if isinstance(got, dict) else got
        if backend == "ort":  # the session's plain call is its first output
            torch.testing.assert_close(torch.as_tensor(got), expected["out"], atol=1e-4, rtol=1e-4)
        else:
            _check(got, expected)
    assert (
        sorted(p.name for p in tmp_path.iterdir())
        == {
            "eager": [],
            "channels_last": [],
            "ort": ["m.onnx"],
            "ort_int8": ["m.int8.onnx", "m.onnx"],
            "openvino": ["m.bin", "m.onnx", "m.xml"],
        }[backend]
    )


def test_a_file_backend_without_a_workdir_is_refused(two_heads) -> None:
    with pytest.raises(ValueError, match="the ort backend runs an exported file: give a workdir"):
        prepare(two_heads[0], "ort", torch.randn(1, 3, 32, 32))
