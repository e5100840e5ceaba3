"""The sweep (resumable, skipping finished cells), checkpoint evaluation, and the CLI."""

import csv
import importlib
import json

import pytest
import torch

from mobilenets.cli.main import main
from mobilenets.training import SweepConfig, TrainConfig, evaluate_checkpoint, sweep

sweep_module = importlib.import_module("mobilenets.training.grid")


def test_sweep_writes_table_and_plot_then_skips_finished_cells(tmp_path, monkeypatch) -> None:
    config = SweepConfig(
        out=str(tmp_path),
        width_mults=(0.5, 0.25),
        resolutions=(40, 32),
        train=TrainConfig(epochs=1, progress=False),
        latency_runs=3,
    )
    rows = sweep(config, log=lambda _m: None)
    assert [(r["width_mult"], r["resolution"]) for r in rows] == [
        (0.5, 40),
        (0.5, 32),
        (0.25, 40),
        (0.25, 32),
    ]
    assert rows[0]["rho"] == 1.0 and rows[1]["rho"] == 0.8
    assert rows[0]["macs"] > rows[1]["macs"] > 0 and rows[0]["params"] == rows[1]["params"]
    assert all(0 < r["latency_p10_ms"] <= r["latency_ms"] <= r["latency_p90_ms"] for r in rows)
    table = (tmp_path / "sweep.md").read_text()
    assert "median and 10th–90th percentile" in table and "not yet timed" not in table
    assert "| mobilenet_v1 | 0.25 | 0.800 | 32 |" in table
    assert len(list(csv.DictReader((tmp_path / "sweep.csv").open()))) == 4
    assert (tmp_path / "sweep.png").stat().st_size > 20_000

    def no_training(*_args, **_kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(sweep_module, "fit", no_training)
    monkeypatch.setattr(sweep_module, "measure_latencies", no_training)  # timed once
    assert sweep(config, log=lambda _m: None) == rows


def test_sweep_latency_is_interleaved_and_wide_spreads_are_flagged(monkeypatch) -> None:
    """Latency is timed after training, one forward of each cell in turn; a spread wider than
    25% of the median is marked in the table."""
    order = []

    class Probe(torch.nn.Module):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            order.append(self.name)
            return x

    timed = sweep_module.measure_latencies({(1.0, 32): Probe("a"), (0.5, 32): Probe("b")}, runs=4)
    # a warm-up round, then 4 rounds in rotating order, each timed call after an untimed one
    assert order == ["a", "b"] + ["a", "a", "b", "b", "b", "b", "a", "a"] * 2
    assert set(timed) == {(1.0, 32), (0.5, 32)}
    row = {
        "model": "mobilenet_v1",
        "width_mult": 1.0,
        "rho": 1.0,
        "resolution": 32,
        "params": 1,
        "macs": 1,
        "top1": 1.0,
        "top5": 1.0,
        "train_seconds": 1.0,
    }
    calm = sweep_module.format_sweep(
        [{**row, "latency_ms": 2.0, "latency_p10_ms": 1.9, "latency_p90_ms": 2.2}], "digits"
    )
    busy = sweep_module.format_sweep(
        [{**row, "latency_ms": 2.0, "latency_p10_ms": 1.5, "latency_p90_ms": 4.0}], "digits"
    )
    assert "2.00 (1.90–2.20) |" in calm and "⚠" not in calm
    assert "2.00 (1.50–4.00) ⚠ |" in busy and "re-time before comparing" in busy


def test_eval_checkpoint_with_predictions(tmp_path) -> None:
    from mobilenets.training import fit

    run = tmp_path / "run"
    result = fit(
        TrainConfig(width_mult=0.25, epochs=2, out=str(run), progress=False), log=lambda _m: None
    )
    predictions = tmp_path / "pred.csv"
    evaluated = evaluate_checkpoint(run / "checkpoint.pt", predictions=predictions, progress=False)
    assert evaluated.images == 360
    assert evaluated.top1 == pytest.approx(result.top1)
    rows = list(csv.DictReader(predictions.open()))
    assert len(rows) == 360 and rows[0]["path"].startswith("digits/")
    correct = sum(r["label"] == r["prediction"] for r in rows)
    assert 100 * correct / 360 == pytest.approx(evaluated.top1)
    assert (tmp_path / "pred.confusion.png").stat().st_size > 10_000

    # the same network as a safetensors file evaluates the same, and predicts with digit names
    from mobilenets import predict
    from mobilenets.weights import convert_file

    weights = tmp_path / "digits.safetensors"
    info = convert_file("checkpoint", run / "checkpoint.pt", weights, model="")
    assert info.classes == tuple(str(d) for d in range(10)) and info.input_size == 32
    again = evaluate_checkpoint(weights, "digits", progress=False)
    assert again.top1 == pytest.approx(evaluated.top1)
    assert evaluate_checkpoint(weights, progress=False).top1 == again.top1  # its own data
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    image = tmp_path / "digit.png"
    Image.fromarray((digits.images[0] * 15).astype(np.uint8)).convert("RGB").save(image)
    [prediction] = predict(weights, [image], topk=3)
    assert len(prediction.top) == 3 and prediction.top[0][0] in info.classes
    assert prediction.top[0][1] >= prediction.top[1][1] >= prediction.top[2][1]


def test_cli_train_eval_and_errors(tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    assert (
        main(["train", "--width-mult", "0.25", "--epochs", "1", "--out", str(out), "--no-progress"])
        == 0
    )
    assert "top-1" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert main(["eval", "--checkpoint", str(out / "checkpoint.pt"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["images"] == 360
    assert evaluated["top1"] == pytest.approx(summary["val_top1"])
    assert main(["train", "--epochs", "1", "--out", str(out), "--no-progress"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["train", "--data", "mnist", "--out", str(tmp_path / "x")]) == 2
    assert "unknown data spec 'mnist'" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
