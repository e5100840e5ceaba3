"""Networks trained once for the deployment tests."""

import pytest

from mobilenets.training import TrainConfig, fit


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, object]:
    """V1 and V2 (α = 0.5) trained 10 epochs on digits: ~10 s each."""
    out = {}
    for name in ("mobilenet_v1", "mobilenet_v2"):
        folder = tmp_path_factory.mktemp(name)
        fit(
            TrainConfig(model=name, width_mult=0.5, epochs=10, out=str(folder), progress=False),
            log=lambda _m: None,
        )
        out[name] = folder
    return out
