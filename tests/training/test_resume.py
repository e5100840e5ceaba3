"""A run killed with SIGKILL mid-epoch resumes and ends with the uninterrupted run's weights."""

import csv
import datetime
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mobilenets.saved.checkpoint import load_checkpoint, save_checkpoint

ARGS = [
    "train",
    "--model",
    "mobilenet_v1",
    "--width-mult",
    "0.25",
    "--epochs",
    "5",
    "--no-progress",
]


def run(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mobilenets", *ARGS, "--out", str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finished_epochs(out: Path) -> int:
    try:
        return len(list(csv.DictReader((out / "metrics.csv").open())))
    except FileNotFoundError:
        return 0


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path, capsys) -> None:
    """The killed run and its resumption are processes of their own (SIGKILL); the
    uninterrupted reference runs in this one, with the same threads."""
    from mobilenets.cli.main import main

    assert main([*ARGS, "--out", str(tmp_path / "whole")]) == 0, capsys.readouterr().err

    killed = run(tmp_path / "killed")
    deadline = time.monotonic() + 300
    while finished_epochs(tmp_path / "killed") < 2 and killed.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)  # during epoch 3
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert 2 <= finished_epochs(tmp_path / "killed") < 5
    assert not [p for p in (tmp_path / "killed").iterdir() if p.suffix == ".tmp"]

    resumed = run(tmp_path / "killed", "--resume")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "resuming" in output and "restarting with GLIBC_TUNABLES" in output

    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 4
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert [h["val_top1"] for h in a["history"]] == [h["val_top1"] for h in b["history"]]


def test_checkpoint_write_is_atomic_and_load_is_safe(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 3, "model": {"w": torch.ones(2)}}, path)
    assert load_checkpoint(path)["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"checkpoint .*checkpoint\.pt is unreadable or truncated"):
        load_checkpoint(path)
    torch.save({"payload": datetime.date(2026, 1, 1)}, path)  # arbitrary objects are refused
    with pytest.raises(ValueError, match="unreadable"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resume_extends_a_finished_run_and_an_extension_resumes_exactly(tmp_path, monkeypatch):
    """`train --resume --epochs 4` on a finished 2-epoch run: epochs 1-2 stay as they were,
    epochs 3-4 restart the cosine from the peak (no warmup), and an extension killed after
    epoch 3 and resumed ends with exactly the weights of an uninterrupted extension."""
    import importlib
    import shutil

    from mobilenets.training import TrainConfig, fit

    fit_module = importlib.import_module("mobilenets.training.loop")  # the module, not fit()

    root = tmp_path / "data"
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 3)):
        for c, name in enumerate(("a", "b")):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (36, 36, 3), dtype=np.uint8)
                pixels[:, :, c] += 150
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")

    def config(out, epochs, resume=False):
        return TrainConfig(
            model="mobilenet_v1",
            width_mult=0.25,
            data=str(root),
            out=str(out),
            epochs=epochs,
            batch_size=4,
            warmup_epochs=1,
            progress=False,
            resume=resume,
        )

    quiet = {"log": lambda _m: None}
    fit(config(tmp_path / "a", 2), **quiet)
    before = list(csv.DictReader((tmp_path / "a" / "metrics.csv").open()))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    extended = fit(config(tmp_path / "a", 4, resume=True), **quiet)
    rows = list(csv.DictReader((tmp_path / "a" / "metrics.csv").open()))
    assert rows[:2] == before and len(rows) == 4
    peak = TrainConfig().learning_rate
    assert float(rows[2]["lr"]) == pytest.approx(peak)  # the restart starts at the peak
    assert float(rows[3]["lr"]) == pytest.approx(peak * 0.5)  # cos(π/2) half way, 4 steps/epoch
    with pytest.raises(ValueError, match=r"cannot resume a 4-epoch run with --epochs 3"):
        fit(config(tmp_path / "a", 3, resume=True), **quiet)

    real = fit_module._train_epoch

    def killed_after_epoch_3(state, train_model, data, epoch, *args):
        if epoch == 3:
            raise KeyboardInterrupt
        return real(state, train_model, data, epoch, *args)

    monkeypatch.setattr(fit_module, "_train_epoch", killed_after_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        fit(config(tmp_path / "b", 4, resume=True), **quiet)
    monkeypatch.setattr(fit_module, "_train_epoch", real)
    resumed = fit(config(tmp_path / "b", 4, resume=True), **quiet)
    for (key, a), b in zip(
        extended.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), key
