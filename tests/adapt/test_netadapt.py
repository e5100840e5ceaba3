"""NetAdapt (issue 16): the latency table's layers, the cuts, weight inheritance, and a small
search on the digits that resumes after a kill without repeating a fine-tune."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from mobilenets import create_model
from mobilenets.adapt import AdaptConfig, LatencyTable
from mobilenets.adapt import search as search_module
from mobilenets.adapt.lut import build_layer, layer_specs
from mobilenets.adapt.prune import Unit, cut, inherit, narrower, units
from mobilenets.adapt.run import adapt
from mobilenets.errors import ConfigError


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("name", "family"), [("mobilenet_v2", "v2"), ("mobilenet_v3_small", "v3")])
def test_the_latency_table_layers_are_the_whole_network(name: str, family: str) -> None:
    """The stem, every block and the head, built alone, hold exactly the network's weights
    (BN folded into conv biases on both sides) and see the network's own input sizes."""
    from mobilenets.export.folding import fold_bn

    model = create_model(name, num_classes=10)
    specs = layer_specs(model.table, family, 64, 10)
    assert [s["kind"] for s in specs] == ["stem"] + ["block"] * len(model.table["rows"]) + ["head"]
    assert sum(_params(build_layer(s)[0]) for s in specs) == _params(fold_bn(model))
    sizes = {}

    def record(k: int):
        def hook(module, inputs, output) -> None:
            sizes[k] = inputs[0].shape[-1]

        return hook

    hooks = [
        b.register_forward_hook(record(k))
        for k, b in enumerate(model.blocks[: len(model.table["rows"])])
    ]
    model.eval()(torch.randn(1, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    assert [s["hw"] for s in specs[1:-1]] == [sizes[k] for k in range(len(sizes))]


@pytest.mark.parametrize("backend", ["eager", "ort"])
def test_the_latency_table_measures_each_layer_once_and_caches_it(tmp_path, backend) -> None:
    specs = layer_specs(create_model("mobilenet_v3_small").table, "v3", 32, 10)
    first = LatencyTable(backend, 1, runs=3, folder=tmp_path)
    predicted = first.predict(specs)
    assert first.measured == len({json.dumps(s, sort_keys=True) for s in specs})
    assert predicted > 0
    again = LatencyTable(backend, 1, runs=3, folder=tmp_path)
    assert again.predict(specs) == predicted and again.measured == 0


def test_units_are_expansions_and_residual_groups() -> None:
    table = create_model("mobilenet_v2").table
    found = units(table, "v2")
    assert [u for u in found if u.kind == "out"] == [
        Unit("out", 0, 0), Unit("out", 1, 2), Unit("out", 3, 5), Unit("out", 6, 9),
        Unit("out", 10, 12), Unit("out", 13, 15), Unit("out", 16, 16),
    ]  # fmt: skip
    # block 0 (t = 1) has no expansion conv to cut; every other block has one
    assert [u.first for u in found if u.kind == "exp"] == list(range(1, 17))
    assert narrower(96, 8)[:3] == [88, 80, 72] and narrower(16, 8) == [8]


def test_a_cut_never_changes_the_structure() -> None:
    table = create_model("mobilenet_v3_small").table
    # blocks 6–7 (48 ch) at 40 would equal block 6's 40-channel input: a new residual
    assert cut(table, "v3", Unit("out", 6, 7), 40) is None
    narrowed = cut(table, "v3", Unit("out", 6, 7), 32)
    assert [r["out"] for r in narrowed["rows"][6:8]] == [32, 32]
    assert narrowed["rows"][8]["out"] == 96 and table["rows"][6]["out"] == 48  # not in place


def _random_bn(model: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize(("name", "family"), [("mobilenet_v2", "v2"), ("mobilenet_v3_small", "v3")])
def test_inheriting_into_the_same_table_is_exact(name: str, family: str) -> None:
    seed = _random_bn(create_model(name, num_classes=10))
    same = inherit(
        seed, create_model(name, num_classes=10, table=copy.deepcopy(seed.table)), family
    )
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(same.eval()(x), seed(x))


def test_a_cut_keeps_the_filters_with_the_largest_l1_norm() -> None:
    seed = _random_bn(create_model("mobilenet_v3_small", num_classes=10))
    table = cut(seed.table, "v3", Unit("exp", 4, 4), 200)  # 240 → 200
    cut_net = inherit(seed, create_model("mobilenet_v3_small", num_classes=10, table=table), "v3")
    old = seed.blocks[4].expand
    scale = old.bn.weight / torch.sqrt(old.bn.running_var + old.bn.eps)
    norms = (old.conv.weight * scale.view(-1, 1, 1, 1)).abs().flatten(1).sum(1)
    kept = torch.sort(torch.topk(norms, 200).indices).values
    assert torch.equal(cut_net.blocks[4].expand.conv.weight, old.conv.weight[kept])
    assert torch.equal(
        cut_net.blocks[4].depthwise.conv.weight, seed.blocks[4].depthwise.conv.weight[kept]
    )
    assert torch.equal(
        cut_net.blocks[4].project.conv.weight, seed.blocks[4].project.conv.weight[:, kept]
    )
    assert (
        cut_net.blocks[4].se.fc1.in_channels == 200
        and cut_net.blocks[4].se.fc1.out_channels == 48  # make_divisible(200 / 4)
    )


def _small(**changes: object) -> AdaptConfig:
    settings = dict(
        model="mobilenet_v3_small", resolution=32, target_ratio=0.92, steps=2, seed_steps=60,
        finetune_steps=4, final_epochs=1, uniform=(1.0, 0.5), holdout=120, lut_runs=3,
        measure_runs=30, backend="eager", lr=0.05,
    )  # fmt: skip
    return AdaptConfig(**{**settings, **changes})


def test_a_small_search_meets_its_target_resumes_and_writes_its_results(
    tmp_path, monkeypatch
) -> None:
    """A kill in the middle of a step: the rerun reuses every finished proposal."""
    calls = []
    real = search_module.train_steps

    def counted(model, loader, steps, lr, seed):
        calls.append(steps)
        if len(calls) == 3:  # the seed, two proposals ... then killed
            raise KeyboardInterrupt
        return real(model, loader, steps, lr, seed)

    monkeypatch.setattr(search_module, "train_steps", counted)
    with pytest.raises(KeyboardInterrupt):
        adapt(_small(), tmp_path)
    state = json.loads((tmp_path / "state.json").read_text())
    assert len(state["history"]) == 1  # the seed
    assert len(list((tmp_path / "step_001").glob("*.json"))) == 1  # one proposal finished
    calls.clear()
    monkeypatch.setattr(search_module, "train_steps", real)
    result = adapt(_small(), tmp_path)
    history = result["history"]
    assert history[-1]["predicted_ms"] <= result["target_ms"] < history[0]["predicted_ms"]
    assert [h["predicted_ms"] for h in history] == sorted(
        (h["predicted_ms"] for h in history), reverse=True
    )
    final = create_model("mobilenet_v3_small", num_classes=10, table=history[-1]["table"])
    assert _params(final) < _params(create_model("mobilenet_v3_small", num_classes=10))
    for name in ("adapt.csv", "table.json", "comparison.csv", "adapt.png", "adapt.json"):
        assert (tmp_path / name).stat().st_size > 0
    rows = {r["network"]: r for r in result["comparison"]}
    assert set(rows) == {"adapted", "α=1", "α=0.5"}
    assert rows["α=0.5"]["macs"] < rows["α=1"]["macs"]
    assert not list(tmp_path.glob("step_*/"))  # each step's leftovers removed


def test_a_search_refuses_to_continue_with_other_settings(tmp_path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"config": _small().to_dict(), "history": []}))
    with pytest.raises(ConfigError, match="holds a search with other settings \\(finetune_steps"):
        search_module.Search(_small(finetune_steps=9), tmp_path, print)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target_ratio": None}, "exactly one of --target-ms and --target-ratio"),
        ({"target_ms": 1.0}, "exactly one of --target-ms and --target-ratio"),
        ({"target_ratio": 1.5}, r"target_ratio must be a finite number in \(0, 1\), got 1.5"),
        ({"backend": "tensorrt"}, r"backend must be one of \('ort', 'eager'\)"),
        ({"finetune_steps": 0}, r"finetune_steps must be an integer in \[1, inf\), got 0"),
        ({"divisor": 3}, r"divisor must be one of \(1, 2, 4, 8, 16\), got 3"),
        ({"uniform": (0.5, 0.5)}, r"--uniform must list distinct α"),
    ],
)
def test_bad_settings_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _small(**changes)


def test_v1_cannot_be_adapted(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"model must be one of \('mobilenet_v2', "):
        adapt(_small(model="mobilenet_v1"), tmp_path)
