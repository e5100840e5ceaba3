"""Helpers of the bad-input suite: the workspace it reads (a real image folder, a trained run,
its weights, its ONNX export, torchvision/timm state dicts) and file snapshots. The cases only
read the workspace; every case checks that the files it saw before are byte-identical after."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Workspace:
    root: Path
    folder: Path  # train/ and val/, classes circle, square, stripes
    run: Path  # a finished run folder
    checkpoint: Path
    weights: Path  # .safetensors of the run
    onnx: Path
    image: Path  # a good RGB photo-like PNG
    tv_state: Path  # torchvision mobilenet_v3_small state dict
    timm_state: Path  # timm mobilenetv3_small_050 state dict


def write_folder(root: Path, classes=("circle", "square", "stripes"), train=6, val=3) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (40, 48, 3), dtype=np.uint8)
                pixels[:, :, c % 3] += 150
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def snapshot(*folders: Path) -> dict[Path, str]:
    """sha256 of every file below ``folders`` (symlinks not followed)."""
    digests = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                digests[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests
