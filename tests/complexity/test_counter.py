"""The counter against exact published numbers and an independent count (FlopCounterMode)."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mobilenets import create_model, list_models, profile
from mobilenets.layers import DepthwiseSeparable


def flop_counter_macs(model: torch.nn.Module, size: int) -> int:
    """torch's own count: FLOPs of conv and matmul ops / 2."""
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name", list_models(task="classification"))
@pytest.mark.parametrize(("width_mult", "size"), [(1.0, 224), (0.5, 160), (1.4, 97)])
def test_macs_agree_with_flop_counter_mode(name: str, width_mult: float, size: int) -> None:
    model = create_model(name, width_mult=width_mult)
    assert profile(model, size).macs == flop_counter_macs(model, size)


def test_v1_exact_counts() -> None:
    prof = profile(create_model("mobilenet_v1"))
    assert prof.macs == 568_740_352
    assert prof.total_params == 4_231_976
    assert prof.paper_params == 4_209_088


def test_v1_table2_shares() -> None:
    shares = profile(create_model("mobilenet_v1")).shares()
    rounded = {k: (round(m, 2), round(p, 2)) for k, (m, p) in shares.items()}
    assert rounded == {
        "conv3x3": (1.91, 0.02),  # printed 1.19: a transposition
        "conv_dw": (3.06, 1.06),
        "conv1x1": (94.86, 74.59),
        "fc": (0.18, 24.33),
    }


def test_zero_cost_rows_are_listed_with_zero_mult_adds() -> None:
    prof = profile(create_model("mobilenet_v3_small"))
    kinds = prof.by_kind()
    for kind in ("bn", "act", "pool", "dropout"):
        assert kinds[kind].count > 0 and kinds[kind].macs == 0
    assert kinds["se"].count == 18  # 9 SE blocks × 2 FC layers
    assert sum(r.params for r in prof.rows) == prof.total_params


def test_rows_carry_shapes_and_names() -> None:
    prof = profile(create_model("mobilenet_v1"), 128)
    first = prof.rows[0]
    assert (first.name, first.kind, first.output_shape) == ("stem.conv", "conv3x3", (1, 32, 64, 64))
    assert first.macs == 3 * 3 * 3 * 32 * 64 * 64
    assert prof.input_shape == (3, 128, 128)


def test_separable_saving_equals_one_over_n_plus_one_over_k_squared() -> None:
    prof = profile(create_model("mobilenet_v1"))
    assert len(prof.separable) == 13
    for cost in prof.separable:
        assert cost.ratio == pytest.approx(cost.paper_ratio, rel=1e-12)
    layer = profile(DepthwiseSeparable(512, 512), 14, in_chans=512).separable[0]
    assert (layer.separable_macs, layer.full_conv_macs) == (52_283_392, 462_422_016)


def test_format_and_dict_hold_the_totals() -> None:
    prof = profile(create_model("mobilenet_v2"))
    text = prof.format("kind")
    assert "300,774,272" in text and "3,504,872" in text and "3,469,760" in text
    data = prof.to_dict()
    assert data["macs"] == 300_774_272 and len(data["layers"]) == len(prof.rows)
    with pytest.raises(ValueError, match="by must be 'layer' or 'kind'"):
        prof.format("type")
