"""Explicit tables (issue 16, item 1): every uniform-α model is a table that rebuilds it exactly,
any table builds, it round-trips through JSON and saved weights, and a bad one is refused."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from mobilenets import create_model
from mobilenets.errors import ConfigError
from mobilenets.models.table import read_table, write_table

UNIFORM = [
    ("mobilenet_v1", {"width_mult": 0.5}),
    ("mobilenet_v1", {"width_mult": 0.75, "channel_rules": "keras"}),
    ("mobilenet_v1", {"shallow": True}),
    ("mobilenet_v1_conv", {"width_mult": 0.25}),
    ("mobilenet_v2", {"width_mult": 0.35}),
    ("mobilenet_v2", {"width_mult": 1.4}),
    ("mobilenet_v3_large", {"width_mult": 0.75}),
    ("mobilenet_v3_large", {"reduced_tail": True, "channel_rules": "torchvision"}),
    ("mobilenet_v3_small", {"minimalistic": True, "width_mult": 0.5, "channel_rules": "timm"}),
    ("mobilenet_v3_small", {"width_mult": 0.75, "channel_rules": "keras"}),
]


@pytest.mark.parametrize(("name", "kwargs"), UNIFORM)
def test_a_uniform_model_is_its_table(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    scaled = create_model(name, num_classes=10, **kwargs).eval()
    table = json.loads(json.dumps(scaled.table))  # through JSON, as it is stored
    rebuilt = create_model(name, num_classes=10, table=table).eval()
    rebuilt.load_state_dict(scaled.state_dict())  # strict: the same names and shapes
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), scaled(x))
    assert rebuilt.table == table


def test_the_papers_tables_are_the_defaults() -> None:
    assert create_model("mobilenet_v1").table["rows"][:2] == [
        {"s": 1, "c": 64},
        {"s": 2, "c": 128},
    ]
    v2 = create_model("mobilenet_v2").table
    assert v2["stem"] == 32 and v2["last"] == 1280 and len(v2["rows"]) == 17
    assert v2["rows"][:3] == [
        {"exp": 32, "out": 16, "s": 1},  # t = 1: no expansion conv
        {"exp": 96, "out": 24, "s": 2},
        {"exp": 144, "out": 24, "s": 1},
    ]
    v3 = create_model("mobilenet_v3_small").table
    assert v3["last"] == [576, 1024] and v3["head_nl"] == "HS"
    assert v3["rows"][3] == {"k": 5, "exp": 96, "out": 40, "se": True, "nl": "HS", "s": 2}


def test_v2_and_v3_rows_name_their_output_out_and_older_v2_tables_still_read(tmp_path) -> None:
    """One name for a row's output channels across V2 and V3 (issue 24); a V2 table written
    before that (rows ``{"exp", "c", "s"}``) builds the same network."""
    table = create_model("mobilenet_v2", width_mult=0.5).table
    older = {
        **table,
        "rows": [{"exp": r["exp"], "c": r["out"], "s": r["s"]} for r in table["rows"]],
    }
    write_table(older, tmp_path / "old.json")
    torch.manual_seed(0)
    new = create_model("mobilenet_v2", table=table, num_classes=3).eval()
    torch.manual_seed(0)
    old = create_model("mobilenet_v2", table=read_table(tmp_path / "old.json"), num_classes=3)
    assert old.table == table and old.state_dict().keys() == new.state_dict().keys()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(old.eval()(x), new(x), atol=0, rtol=0)


def test_any_table_builds_with_its_own_widths_and_counts() -> None:
    table = copy.deepcopy(create_model("mobilenet_v2").table)
    table["rows"][5]["exp"] = 64  # one block's expansion cut from 192
    table["rows"][3]["out"] = table["rows"][4]["out"] = table["rows"][5]["out"] = 24  # a group
    model = create_model("mobilenet_v2", num_classes=10, table=table)
    assert model.blocks[5].expand.conv.out_channels == 64
    assert model.blocks[3].project.conv.out_channels == 24
    assert model.blocks[6].expand.conv.in_channels == 24
    base = sum(p.numel() for p in create_model("mobilenet_v2", num_classes=10).parameters())
    cut = sum(p.numel() for p in model.parameters())
    assert cut < base
    model(torch.randn(1, 3, 64, 64)).sum().backward()


def test_table_files_round_trip_and_saved_weights_rebuild_the_network(tmp_path) -> None:
    from mobilenets.saved.info import NetworkInfo
    from mobilenets.weights import load, save_weights

    table = copy.deepcopy(create_model("mobilenet_v3_small").table)
    table["rows"][4]["exp"] = 128
    path = write_table(table, tmp_path / "table.json")
    assert read_table(path) == table
    model = create_model("mobilenet_v3_small", num_classes=10, table=read_table(path)).eval()
    info = NetworkInfo("mobilenet_v3_small", model.model_kwargs, input_size=64)
    save_weights(model, tmp_path / "w.safetensors", info)
    loaded, info = load(tmp_path / "w.safetensors")
    assert info.kwargs["table"] == table
    assert loaded.blocks[4].expand.conv.out_channels == 128
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t["rows"][0].update(c=0), r"rows\[0\]\.c must be a channel count"),
        (lambda t: t["rows"][1].update(s=3), r"rows\[1\]\.s \(stride\) must be 1 or 2"),
        (lambda t: t["rows"][2].pop("c"), r"rows\[2\] must have exactly the keys.*missing \['c'\]"),
        (lambda t: t["rows"].clear(), r"'rows' must be a non-empty list"),
        (lambda t: t.update(stem="32"), r"'stem' must be a channel count"),
        (lambda t: t.update(extra=1), r"unknown \['extra'\]"),
    ],
)
def test_a_bad_table_is_refused_with_what_is_allowed(edit, message: str) -> None:
    table = copy.deepcopy(create_model("mobilenet_v1").table)
    edit(table)
    with pytest.raises(ConfigError, match=message):
        create_model("mobilenet_v1", table=table)


def test_v3_table_fields_are_checked() -> None:
    table = copy.deepcopy(create_model("mobilenet_v3_large").table)
    table["rows"][0]["nl"] = "GELU"
    with pytest.raises(ConfigError, match=r"nonlinearity\) must be 'RE' or 'HS'"):
        create_model("mobilenet_v3_large", table=table)
    table = copy.deepcopy(create_model("mobilenet_v3_large").table)
    table["last"] = [960]
    with pytest.raises(ConfigError, match="'last' must be"):
        create_model("mobilenet_v3_large", table=table)


def test_a_table_refuses_keywords_that_would_rescale_it() -> None:
    table = create_model("mobilenet_v2").table
    with pytest.raises(ConfigError, match="width_mult cannot change it"):
        create_model("mobilenet_v2", table=table, width_mult=0.5)
    with pytest.raises(ConfigError, match="shallow cannot change it"):
        create_model("mobilenet_v1_shallow", table=create_model("mobilenet_v1").table)


def test_a_table_file_that_is_not_json_is_refused(tmp_path) -> None:
    (tmp_path / "t.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"t\.json is not valid JSON"):
        read_table(tmp_path / "t.json")
    with pytest.raises(ConfigError, match="no table file"):
        read_table(tmp_path / "missing.json")
