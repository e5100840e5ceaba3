"""What the bad-input suite cannot show as one failing command: images decoded right, runs that
stop before they write anything wrong, locks, temporaries and the README's reliability claims."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _workspace import Workspace, snapshot, write_folder
from PIL import Image

from mobilenets.cli.main import main
from mobilenets.data.folder import SafeImageFolder, load_rgb
from mobilenets.errors import RunLockedError, TrainingDivergedError
from mobilenets.fileio import LOCK_NAME, TMP_SUFFIX, RunLock, atomic_path, clean_orphans
from mobilenets.saved.safetensors import weights_metadata
from mobilenets.training import TrainConfig, fit


def test_sixteen_bit_png_is_scaled_not_saturated(tmp_path) -> None:
    ramp = np.linspace(0, 65535, 64 * 64).astype(np.uint16).reshape(64, 64)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    rgb = np.asarray(load_rgb(str(tmp_path / "g16.png")))
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    assert rgb.shape == (64, 64, 3) and np.array_equal(rgb[..., 1], expected)
    assert rgb.max() == 255 and (rgb == 255).mean() < 0.01  # PIL's convert("RGB") clips: 94%


@pytest.mark.parametrize("mode", ["CMYK", "P", "P-transparent", "LA", "RGBA", "L", "1", "I", "F"])
def test_every_image_mode_becomes_8_bit_rgb(tmp_path, mode: str) -> None:
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 40, 3), np.uint8))
    if mode == "I":
        image = Image.fromarray(np.full((32, 40), 51400, np.int32), "I")  # 16-bit data as "I"
    elif mode == "F":
        image = Image.fromarray(np.full((32, 40), 0.5, np.float32), "F")
    else:
        image = base.convert(mode.split("-")[0])
    suffix = ".tif" if mode in ("CMYK", "I", "F") else ".png"
    extra = {"transparency": 0} if mode == "P-transparent" else {}
    image.save(tmp_path / f"x{suffix}", **extra)
    rgb = load_rgb(str(tmp_path / f"x{suffix}"))
    assert rgb.mode == "RGB" and rgb.size == (40, 32)
    if mode == "I":
        assert np.asarray(rgb)[0, 0].tolist() == [200, 200, 200]  # 51400 / 257
    if mode == "F":
        assert np.asarray(rgb)[0, 0].tolist() == [128, 128, 128]


def test_symlinked_folders_are_followed_once_and_loops_are_not(tmp_path) -> None:
    root = write_folder(tmp_path / "d")
    os.symlink(root / "train" / "circle", root / "train" / "circle" / "again")  # a loop
    outside = write_folder(tmp_path / "more", classes=("circle",), train=2, val=0)
    os.symlink(outside / "train" / "circle", root / "train" / "circle" / "more")
    dataset = SafeImageFolder(root / "train")
    names = [Path(p).name for p, c in dataset.samples if c == 0]
    assert len(names) == 6 + 2  # its own images and the linked folder's, each once


def test_non_utf8_file_names_train_and_are_written_back_as_bytes(tmp_path, capsys) -> None:
    root = write_folder(tmp_path / "d")
    raw = b"caf\xe9-\xff.png"  # Latin-1, not UTF-8
    good = root / "val" / "circle" / "0.png"
    os.rename(good, root / "val" / "circle" / os.fsdecode(raw))
    run = tmp_path / "run"
    argv = [
        "train",
        "--model",
        "mobilenet_v1",
        "--width-mult",
        "0.25",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--no-progress",
        "--data",
        str(root),
        "--out",
        str(run),
    ]
    assert main(argv) == 0
    csv_path = tmp_path / "pred.csv"
    argv = ["eval", "--checkpoint", str(run / "checkpoint.pt"), "--predictions", str(csv_path)]
    assert main(argv) == 0
    assert raw in csv_path.read_bytes()  # the real file name, byte for byte
    assert (tmp_path / "pred.confusion.png").stat().st_size > 0


def test_skip_bad_images_in_predict(ws: Workspace, tmp_path, capsys) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"junk")
    argv = ["predict", "--weights", str(ws.weights), str(tmp_path / "bad.jpg"), str(ws.image)]
    assert main([*argv, "--skip-bad-images", "--json"]) == 1  # something was skipped
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [r["error"] is None for r in rows] == [False, True]
    assert len(rows[1]["top"]) == 3 and "skipped: cannot read image" in captured.err


def test_skip_bad_images_with_a_bomb_and_the_memory_cache(tmp_path) -> None:
    root = write_folder(tmp_path / "d")
    Image.new("1", (15000, 15000)).save(root / "train" / "circle" / "bomb.png")
    (root / "train" / "square" / "bad.png").write_bytes(b"junk")
    from mobilenets.data import build_dataset

    cached = build_dataset(str(root), "train", 32, cache_in_memory=True, skip_bad_images=True)
    assert len(cached) == 18 and cached.skipped == 2


def test_metadata_is_printed_escaped(ws: Workspace, tmp_path, capsys) -> None:
    from safetensors.torch import save_file

    from mobilenets.weights import read_weights

    tensors, info = read_weights(ws.weights)
    meta = {**weights_metadata(info), "classes": json.dumps(["a\x1b[2J", "b\r\n", "c"])}
    save_file(tensors, str(tmp_path / "w.safetensors"), metadata=meta)
    assert main(["predict", "--weights", str(tmp_path / "w.safetensors"), str(ws.image)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "a\\x1b[2J" in out


def _config(root: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(
        model="mobilenet_v1",
        width_mult=0.25,
        data=str(root),
        out=str(out),
        batch_size=4,
        progress=False,
        **kw,
    )


def test_a_diverged_run_keeps_its_last_good_checkpoint(tmp_path, monkeypatch) -> None:
    root = write_folder(tmp_path / "d")
    out = tmp_path / "run"
    calls = {"n": 0}
    forward = torch.nn.CrossEntropyLoss.forward

    def poisoned(self, logits, target):
        loss = forward(self, logits, target)
        if self.reduction == "mean":  # training steps (evaluation sums)
            calls["n"] += 1
            if calls["n"] == 6:  # epoch 2 (4 steps an epoch), step 2
                return loss * float("nan")
        return loss

    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.CrossEntropyLoss, "forward", poisoned)
        with pytest.raises(TrainingDivergedError, match=r"epoch 2/2, step 2: the loss is nan"):
            fit(_config(root, out, epochs=2))
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 0 and len(state["history"]) == 1  # epoch 1, as it was written
    assert all(
        bool(torch.isfinite(v).all()) for v in state["model"].values() if v.is_floating_point()
    )
    assert not (out / LOCK_NAME).exists() and not list(out.glob(f"*{TMP_SUFFIX}"))
    assert not (out / "summary.json").exists()
    result = fit(_config(root, out, epochs=2, resume=True))  # the last good epoch goes on
    assert result.summary["epochs"] == 2


def test_run_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = tmp_path / "run"
        folder.mkdir()
        holder = {"pid": sleeper.pid, "host": os.uname().nodename, "since": time.time()}
        (folder / LOCK_NAME).write_text(json.dumps(holder))
        with pytest.raises(RunLockedError, match=rf"in use by another run \(pid {sleeper.pid}"):
            RunLock(folder).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    with RunLock(folder) as lock:  # the holder is dead now: stale, taken over
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (folder / LOCK_NAME).exists()


def test_orphaned_temporaries_are_cleaned_and_writes_are_atomic(tmp_path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = tmp_path / f".checkpoint.pt.{dead.stdout.strip()}.abc{TMP_SUFFIX}"
    orphan.write_bytes(b"half")
    mine = tmp_path / f".other.{os.getpid()}.xyz{TMP_SUFFIX}"
    mine.write_bytes(b"in progress")
    assert clean_orphans(tmp_path) == [orphan]
    assert mine.exists() and not orphan.exists()
    odd = tmp_path / f".odd.².abc{TMP_SUFFIX}"  # a digit int() refuses: not a pid, an orphan
    odd.write_bytes(b"?")
    assert clean_orphans(tmp_path, "odd") == [odd]
    orphan.write_bytes(b"half")  # the next write of checkpoint.pt itself cleans it too
    with atomic_path(tmp_path / "checkpoint.pt") as tmp:
        tmp.write_bytes(b"whole")
    assert not orphan.exists() and (tmp_path / "checkpoint.pt").read_bytes() == b"whole"
    (tmp_path / "checkpoint.pt").unlink()
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("new, half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [mine, target]


def test_two_writers_never_share_a_temporary(tmp_path) -> None:
    target = tmp_path / "x.json"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b
        a.write_text("a")
        b.write_text("b")
    assert target.read_text() == "a"  # the outer one finished last


def test_bug_keeps_its_traceback(monkeypatch) -> None:
    """Only user errors become one line: a real bug still raises."""
    import mobilenets.complexity.paper as paper

    monkeypatch.setattr(paper, "compare", lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["paper"])


def test_disk_full_is_one_line(ws: Workspace, tmp_path, capsys, monkeypatch) -> None:
    import errno

    import mobilenets.fileio as fileio

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o"))

    monkeypatch.setattr(fileio.os, "replace", full)
    before = snapshot(ws.root)
    assert main(["export", str(ws.weights), "--out", str(tmp_path / "o.onnx")]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert snapshot(ws.root) == before and not list(tmp_path.iterdir())


def test_a_full_disk_is_one_line_and_the_previous_file_is_intact(ws, tmp_path, monkeypatch, capsys):
    """torch.save, onnx, safetensors and OpenVINO each say "disk full" in their own words (a
    RuntimeError, a SafetensorError): the write is reported as the OS error it is."""
    import errno

    from safetensors import SafetensorError

    import mobilenets.fileio as fileio
    import mobilenets.saved.safetensors as saved

    out = tmp_path / "w.safetensors"
    out.write_bytes(b"the previous weights")

    def full(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(saved, "save_file", full)
    monkeypatch.setattr(fileio, "disk_full", lambda folder, spare=0: True)
    argv = ["convert", "--from", "checkpoint", str(ws.checkpoint), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "w.safetensors: no space left on the device (the previous file is intact)" in err
    assert out.read_bytes() == b"the previous weights"
    assert not list(tmp_path.glob(f"*{TMP_SUFFIX}"))
    with pytest.raises(OSError) as raised, atomic_path(out) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc] PytorchStreamWriter failed")
    assert raised.value.errno == errno.ENOSPC and out.read_bytes() == b"the previous weights"


def test_a_killed_exports_temporary_folder_is_removed_by_the_next_export(tmp_path) -> None:
    from mobilenets.fileio import temporary_folder

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    left = tmp_path / f".m.xml.{int(dead.stdout)}.x1y2{TMP_SUFFIX}"
    left.mkdir()
    (left / "m.bin").write_bytes(b"half an IR")
    with temporary_folder(tmp_path / "m.xml") as folder:
        assert folder.is_dir() and not left.exists()
    assert not folder.exists() and list(tmp_path.iterdir()) == []


def test_a_file_name_with_a_newline_cannot_forge_a_line(ws, tmp_path, capsys) -> None:
    """Issue 23, item 6: names are printed as data, control characters escaped: eval's CSV has
    one line per image and predict's table one line per name, whatever the names hold."""
    root = write_folder(tmp_path / "d")
    forged = "0\ncircle,square,0.9999,.png"
    os.rename(root / "val" / "circle" / "0.png", root / "val" / "circle" / forged)
    csv_path = tmp_path / "pred.csv"
    argv = ["eval", "--checkpoint", str(ws.checkpoint), "--data", str(root)]
    assert main([*argv, "--predictions", str(csv_path)]) == 0
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 1 + 9  # the header and one line per held-out image
    assert sum("0\\ncircle,square,0.9999,.png" in line for line in lines) == 1
    capsys.readouterr()
    assert (
        main(["predict", "--weights", str(ws.weights), str(root / "val" / "circle" / forged)]) == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("0\\ncircle,square,0.9999,.png") and len(out) == 1 + 3
