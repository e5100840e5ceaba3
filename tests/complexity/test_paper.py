"""``mobilenets paper``: every published figure reproduced or explained."""

import json
from pathlib import Path

import pytest

from mobilenets.complexity.paper import Comparison, compare, count_params, load_figures

SHARED = Path(__file__).resolve().parents[3] / "shared" / "reference" / "paper_figures.json"


@pytest.fixture(scope="module")
def rows() -> dict[tuple[str, str, str], Comparison]:
    return {(r.source, r.label, r.metric): r for r in compare()}


MA, P = "mult-adds (M)", "params (M)"


@pytest.mark.parametrize(
    "key",
    [
        ("V1 Table 6", "1.0-224", MA),
        ("V1 Table 6", "1.0-224", P),
        ("V1 Table 4", "Conv MobileNet", P),
        ("V1 Table 5", "Shallow MobileNet", MA),
        ("V1 Table 5", "Shallow MobileNet", P),
        ("V1 Table 3", "Depthwise Separable Conv", MA),
        ("V3 Table 3", "small 1.0", P),
        ("torchvision", "mobilenet_v3_large", "params"),
    ],
)
def test_headline_figures_match_to_the_printed_digit(rows: dict, key: tuple) -> None:
    assert rows[key].status == "match", rows[key]


def test_v1_tables_6_and_7_row_by_row(rows: dict) -> None:
    table = [r for k, r in rows.items() if k[0] in ("V1 Table 6", "V1 Table 7")]
    assert len(table) == 16
    assert {r.status for r in table} <= {"match", "truncated"}
    truncated = [(r.label, r.metric) for r in table if r.status == "truncated"]
    assert truncated == [("1.0-160", MA)]  # 290.68 printed as 290 (TF-slim prints 291)


def test_table2_conv3x3_share_is_explained(rows: dict) -> None:
    row = rows[("V1 Table 2", "conv3x3", "% mult-adds")]
    assert round(row.ours, 2) == 1.91 and row.published == 1.19
    assert row.status == "differs" and "misprint" in row.reason


def test_conv_mobilenet_last_digit_is_explained(rows: dict) -> None:
    row = rows[("V1 Table 4", "Conv MobileNet", MA)]
    assert round(row.ours, 1) == 4867.3
    assert "FC" in row.reason


def test_v2_and_v3_headlines(rows: dict) -> None:
    assert rows[("V2 paper", "1.0-224", MA)].status == "truncated"  # 300.77 printed 300
    assert rows[("V2 paper", "1.0-224", P)].status == "truncated"  # 3.47 printed 3.4
    assert rows[("V3 Table 3", "small 1.0", MA)].status in ("match", "truncated")
    assert rows[("V3 Table 3", "large 1.0", MA)].reason


def test_tf_slim_grids_params_use_their_conventions(rows: dict) -> None:
    for source in ("V1 TF-slim", "V2 TF-slim"):
        params = [r for k, r in rows.items() if k[0] == source and k[2] == P]
        assert params and all(r.status == "match" for r in params)


def test_every_difference_has_a_reason(rows: dict) -> None:
    unexplained = [r for r in rows.values() if r.status != "match" and not r.reason]
    assert not unexplained
    assert sum(r.status == "match" for r in rows.values()) >= 119


def test_count_params_rejects_unknown_convention(rows: dict) -> None:
    from mobilenets import create_model, profile

    with pytest.raises(ValueError, match="unknown parameter convention 'bn'"):
        count_params(profile(create_model("mobilenet_v1"), 64), "bn")


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/reference is beside the repo only")
def test_package_copy_equals_the_shared_reference() -> None:
    assert load_figures() == json.loads(SHARED.read_text())


def test_dense_tables_params_match_and_mult_adds_are_explained(rows: dict) -> None:
    """V2 Table 7 and V3 Table 7: every parameter figure to the printed digit (V3 with TF
    DeepLab's reduced tail); every mult-add figure counted at the paper's input, with its
    reason."""
    dense = [r for r in rows.values() if r.source in ("V2 Table 7", "V3 Table 7")]
    assert len(dense) == 10
    for r in dense:
        if r.metric == P:
            assert r.status == "match", r
        else:
            assert r.metric == "mult-adds (B)" and r.status == "differs" and r.reason, r
    v2_reduced = rows[("V2 Table 7", "MNet V2* OS16", "mult-adds (B)")]
    assert round(v2_reduced.ours, 3) == 2.741  # the 2.75 B "without ASPP", at 513×513
    v3 = rows[("V3 Table 7", "V3 RF2 LR-ASPP F=128", "mult-adds (B)")]
    assert abs(v3.difference) / v3.published < 0.05
