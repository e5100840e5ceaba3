"""The trained networks (tests/conftest.py) exported and quantized once for the deployment
tests."""

import pytest


class _Int8Onnx(dict):
    """Each trained network exported to ONNX and quantized once, on first use (the int8 tests
    of ONNX Runtime and of OpenVINO read the same files)."""

    def __init__(self, trained: dict, root) -> None:
        super().__init__()
        self.trained, self.root = trained, root

    def __missing__(self, name: str) -> tuple:
        from mobilenets.cli.main import main
        from mobilenets.export.quantize import quantize_onnx

        folder = self.root / name
        folder.mkdir()
        fp32, int8 = folder / "m.onnx", folder / "m.int8.onnx"
        assert main(["export", str(self.trained[name] / "checkpoint.pt"), "--out", str(fp32)]) == 0
        self[name] = (fp32, int8, quantize_onnx(fp32, int8, "digits"))
        return self[name]


@pytest.fixture(scope="session")
def int8_onnx(trained, tmp_path_factory) -> _Int8Onnx:
    """name → (fp32 ONNX, int8 ONNX, the quantize report) of the trained networks."""
    return _Int8Onnx(trained, tmp_path_factory.mktemp("int8"))
