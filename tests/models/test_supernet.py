"""The platform-aware search's space and its weight-sharing supernet (V3 paper, Section 5.1):
every candidate a V3 table, every candidate a slice of one network."""

from __future__ import annotations

import random

import pytest
import torch

from mobilenets.adapt.lut import layer_specs
from mobilenets.errors import ConfigError
from mobilenets.models.registry import create_model
from mobilenets.models.search_space import SearchSpace
from mobilenets.models.supernet import SuperNet, recalibrate_bn


def test_the_space_is_v3s_stages_with_its_choices() -> None:
    """V3-Small's table splits into 5 stages (a new one at stride 2 or a new width: 1, 2, 3,
    2, 3 blocks); depths ±1 keep at least one block. Candidates are tables that build; the
    base's own choices (k 3/5, SE, both nonlinearities) are among them."""
    space = SearchSpace()
    assert [(s.stride, s.out, s.depth) for s in space.stages] == [
        (2, 16, 1), (2, 24, 2), (2, 40, 3), (1, 48, 2), (2, 96, 3)
    ]  # fmt: skip
    assert space.stage_depths == ((1, 2), (1, 2, 3), (2, 3, 4), (1, 2, 3), (2, 3, 4))
    per_block = 3 * 3 * 2 * 2
    depths = [(1, 2), (1, 2, 3), (2, 3, 4), (1, 2, 3), (2, 3, 4)]
    expected = 1
    for choices in depths:
        expected *= 3 * sum(per_block**d for d in choices)
    assert space.size() == expected
    rng = random.Random(0)
    for _ in range(5):
        candidate = space.sample(rng)
        table = space.table(candidate)
        rows = table["rows"]
        assert len(rows) == sum(len(s["blocks"]) for s in candidate["stages"])
        assert [r["s"] for r in rows].count(2) == 4  # the base's strides, at the stages' starts
        model = create_model("mobilenet_v3_small", table=table, num_classes=3)
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
        assert len(layer_specs(table, "v3", 64, 3)) == len(rows) + 2  # NetAdapt's table times it
    largest = space.table(space.largest())
    assert len(largest["rows"]) == 2 + 3 + 4 + 3 + 4 and {r["k"] for r in largest["rows"]} == {7}
    assert largest["stem"] == 16 and largest["last"] == [576, 1024]  # stem and head: V3-Small's


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kernels": ()}, r"kernels is empty: give at least one of 3, 5 or 7"),
        ({"kernels": (3, 4)}, r"kernels must be 3, 5 or 7, got 4"),
        ({"expansions": (0.5,)}, r"expansions must be ratios from 1 to 12, got 0.5"),
        ({"nl": ("RE", "relu")}, r"nl must be 'RE' or 'HS', got 'relu'"),
        ({"widths": (1.0, 1.0)}, r"widths lists a choice twice"),
        ({"depths": "0"}, r"depths must be a list of"),
        ({"base": "mobilenet_v2"}, r"base must be one of"),
    ],
)
def test_a_bad_space_is_one_line(settings, message) -> None:
    with pytest.raises(ConfigError, match=message):
        SearchSpace(**settings)


def test_a_candidate_outside_the_space_is_one_line() -> None:
    space = SearchSpace(kernels=(3, 5))
    candidate = space.sample(random.Random(0))
    candidate["stages"][2]["blocks"][0]["k"] = 7
    with pytest.raises(ConfigError, match=r"stage 3, block 1: k 7 is not one of \(3, 5\)"):
        space.table(candidate)
    candidate = space.sample(random.Random(0))
    candidate["stages"][0]["blocks"] = []
    with pytest.raises(ConfigError, match=r"stage 1: 0 blocks; this space allows \[1, 2\]"):
        space.table(candidate)


@pytest.mark.parametrize("base", ["mobilenet_v3_small", "mobilenet_v3_large"])
def test_every_candidate_is_exactly_a_slice_of_the_supernet(base: str) -> None:
    """The supernet run along a candidate gives the standalone network of its table, built
    from the sliced weights, bit for bit (random BN statistics, so nothing is the identity);
    in training its BatchNorm updates the candidate's channels only."""
    torch.manual_seed(0)
    space = SearchSpace(base=base)
    supernet = SuperNet(space, num_classes=7)
    for layer in supernet.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.running_mean.uniform_(-1, 1)
            layer.running_var.uniform_(0.5, 2)
            layer.weight.data.uniform_(0.5, 1.5)
            layer.bias.data.uniform_(-0.5, 0.5)
    supernet.eval()
    x, rng = torch.randn(2, 3, 64, 64), random.Random(1)
    sizes = set()
    for _ in range(4):
        candidate = space.sample(rng)
        standalone = supernet.subnet(candidate).eval()
        sizes.add(sum(p.numel() for p in standalone.parameters()))
        with torch.no_grad():
            assert torch.equal(supernet(x, candidate), standalone(x))
    assert len(sizes) == 4  # four different networks
    with torch.no_grad():  # without a candidate, evaluation runs the largest network
        assert torch.equal(supernet(x), supernet(x, space.largest()))
    supernet.train()
    candidate = supernet.sample()
    out = space.table(candidate)["rows"][0]["out"]
    statistics = supernet.blocks[0].project.bn.running_mean
    before = statistics.clone()
    supernet(x, candidate)
    assert not torch.equal(before[:out], statistics[:out])
    assert torch.equal(before[out:], statistics[out:])


def test_recalibrated_statistics_are_the_batches_average() -> None:
    """After recalibration a BatchNorm's running mean is the mean of its inputs over the
    batches (cumulative, not the momentum's), whatever it held before."""
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(3))
    model[0].running_mean.fill_(100.0)
    batches = [torch.randn(4, 3, 5, 5) + i for i in range(3)]
    recalibrate_bn(model, batches)
    expected = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    assert torch.allclose(model[0].running_mean, expected, atol=1e-6)
    assert not model.training and model[0].momentum == 0.1


def test_the_supernet_saves_as_its_largest_candidate_and_draws_seeded_paths() -> None:
    """Its state dict is the largest candidate's network's (a checkpoint of it loads into
    ``create_model(base, table=largest)``); in training each call draws a path from the
    epoch's seeded sequence, so a resumed epoch and every process draw the same ones."""
    space = SearchSpace(kernels=(3, 5), widths=(0.5, 1.0))
    supernet = SuperNet(space, seed=3, num_classes=4)
    plain = create_model("mobilenet_v3_small", **supernet.model_kwargs)
    plain.load_state_dict(supernet.state_dict())  # strict: the same names and shapes
    assert supernet.model_kwargs["table"] == space.table(space.largest())
    supernet.set_epoch(2)
    first = [supernet.sample() for _ in range(3)]
    supernet.set_epoch(2)
    assert [supernet.sample() for _ in range(3)] == first
    supernet.set_epoch(3)
    assert supernet.sample() != first[0]
    with pytest.raises(ConfigError, match="table is its search space's largest"):
        SuperNet(space, table=space.table(space.smallest()))


def test_mutation_changes_one_choice_and_stays_in_the_space() -> None:
    """Regularised evolution's mutation: one block choice, one width or one depth redrawn;
    the child is a candidate of the space and differs from its parent."""
    space = SearchSpace()
    rng = random.Random(0)
    parent = space.sample(rng)
    for _ in range(50):
        child = space.mutate(parent, rng)
        space.check(child)
        assert child != parent
        changed = [
            i
            for i, (a, b) in enumerate(zip(parent["stages"], child["stages"], strict=True))
            if a != b
        ]
        assert len(changed) == 1
    assert SearchSpace.from_dict(space.to_dict()) == space
    with pytest.raises(ConfigError, match="has no setting 'kernel'; it takes base, kernels"):
        SearchSpace.from_dict({"kernel": [3]})
