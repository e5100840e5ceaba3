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


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path) -> None:
    whole = run(tmp_path / "whole")
    assert whole.wait(timeout=300) == 0, whole.stdout.read()

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
