"""The format recommendation (issue 14, item 5): bench's fastest path per model and batch is kept
and quoted by export and quantize; without a measurement here, the reference one is."""

from __future__ import annotations

import json

import msgspec

from mobilenets.export.bench import BenchRow, BenchRun
from mobilenets.export.recommend import (
    FASTEST_KEY,
    REFERENCE_FASTEST,
    read_fastest,
    recommend,
    record_fastest,
)
from mobilenets.export.runtimes import Peaks
from mobilenets.fileio import write_cache


def _row(model: str, source: str, backend: str, ms: float, batch: int = 1) -> BenchRow:
    return BenchRow(model, source, backend, batch, 224, ms, ms, ms, 1000 / ms, 1, 1.0)


def test_bench_keeps_our_fastest_path_and_recommend_quotes_it(tmp_path) -> None:
    rows = [
        _row("mobilenet_v2", "mobilenets", "ort", 3.8),
        _row("mobilenet_v2", "mobilenets", "openvino_int8", 1.6),
        _row("mobilenet_v2", "torchvision", "ort", 1.0),  # not ours: never recommended
        _row("mobilenet_v3_small", "mobilenets", "executorch_int8", 1.2, batch=32),
    ]
    path = record_fastest(BenchRun(rows, Peaks({"torch.mm": 100.0}), 2, 0.0, []), tmp_path / "f")
    saved = json.loads(path.read_text())["payload"]
    assert saved["mobilenet_v2|1"]["backend"] == "openvino_int8"
    assert saved["mobilenet_v2|1"]["threads"] == 2
    line = recommend("mobilenet_v2", (1,), path)
    assert line.startswith("fastest here for mobilenet_v2 at batch 1: openvino_int8 (1.60 ms")
    # batch 32 measured here for V3-Small only; batch 1 falls back to the reference machine
    both = recommend("mobilenet_v3_small", (1, 32), path).splitlines()
    assert both[0].startswith("fastest for mobilenet_v3_small at batch 1 on a 2-core")
    assert "mobilenets bench --models mobilenet_v3_small --batch-size 1" in both[0]
    assert both[1].startswith("fastest here for mobilenet_v3_small at batch 32: executorch_int8")
    # measured on another machine: quoted with that machine's name, never as this one's
    table = read_fastest(path)
    table["mobilenet_v2|1"] = msgspec.structs.replace(
        table["mobilenet_v2|1"], machine="AMD EPYC 7B13, 2 cores"
    )
    write_cache(path, table, FASTEST_KEY)
    line = recommend("mobilenet_v2", (1,), path)
    assert line.startswith("fastest on AMD EPYC 7B13, 2 cores for mobilenet_v2 at batch 1")
    # edited by hand (the sha256 no longer fits): dropped, said, and the reference quoted
    path.write_text(path.read_text().replace("openvino_int8", "ort_int8"))
    line = recommend("mobilenet_v2", (1,), path)
    assert line.startswith("fastest for mobilenet_v2 at batch 1 on a 2-core AMD EPYC")


def test_the_reference_covers_every_default_model_at_both_batches() -> None:
    from mobilenets.export.choices import DEFAULT_MODELS

    assert {(m, b) for m in DEFAULT_MODELS for b in (1, 32)} == set(REFERENCE_FASTEST)
    assert recommend("mobilenet_v1_conv") == ""  # nothing known: nothing claimed


def test_export_prints_the_recommendation(tmp_path, capsys, monkeypatch) -> None:
    from mobilenets.cli.main import main

    monkeypatch.setenv("MOBILENETS_CACHE", str(tmp_path / "cache"))
    assert main(["export", "mobilenet_v3_small", "--out", str(tmp_path / "m.onnx")]) == 0
    err = capsys.readouterr().err
    assert "fastest for mobilenet_v3_small at batch 1 on a 2-core AMD EPYC" in err
    assert "ort (1.05 ms at 224 px, 2 threads)" in err
