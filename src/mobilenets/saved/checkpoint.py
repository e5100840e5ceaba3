"""Checkpoints that lose nothing: written to a temporary file, then ``os.replace``d.

A checkpoint holds the model, optimizer, scheduler, AMP scaler, EMA, epoch, RNG states, the
config and the metric history; it is read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import errno
import random
from pathlib import Path
from typing import Annotated

import msgspec
import numpy as np
import torch

from mobilenets.errors import CheckpointError, TrainingDivergedError, display, listed
from mobilenets.fileio import atomic_path, nonfinite_tensors, write_text_atomic
from mobilenets.schema import Count, NonNegative, Percent, Text, validate

__all__ = [
    "CHECKPOINT_NAME",
    "load_checkpoint",
    "nonfinite_tensors",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "write_text_atomic",
]

CHECKPOINT_NAME = "checkpoint.pt"
#: The most epochs (and history rows) a checkpoint may claim.
MAX_EPOCHS = 1_000_000


class EpochRow(msgspec.Struct):
    """One row of a checkpoint's metric history (what the summary and plots read)."""

    epoch: Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCHS)]
    val_loss: NonNegative
    val_images: Count
    epoch_seconds: NonNegative
    images_per_second: NonNegative
    val_top1: Percent | None = None  # classification
    val_top5: Percent | None = None
    val_miou: Percent | None = None  # segmentation
    val_pixel_acc: Percent | None = None
    val_map: Percent | None = None  # detection
    val_ap50: Percent | None = None
    val_ap75: Percent | None = None


class CheckpointRecord(msgspec.Struct):
    """The schema of a training checkpoint's fields (tensors are checked by the loaders:
    shapes against the network, values finite). Absent optional parts are ``None``."""

    model: dict[Text, object]
    format: Text = ""
    config: dict[Text, object] | None = None
    info: dict[Text, object] | None = None
    classes: Annotated[list[Text], msgspec.Meta(max_length=1_000_000)] | None = None
    epoch: Annotated[int, msgspec.Meta(ge=-1, le=MAX_EPOCHS)] | None = None
    history: Annotated[list[EpochRow], msgspec.Meta(max_length=MAX_EPOCHS)] | None = None
    optimizer: dict[Text, object] | None = None
    scheduler: dict[Text, object] | None = None
    scaler: dict[Text, object] | None = None
    ema: dict[Text, object] | None = None
    rng: dict[Text, object] | None = None


def check_checkpoint(state: dict, where: str | Path) -> None:
    """A checkpoint's fields against :class:`CheckpointRecord` (a bare state dict, which has no
    ``model`` entry, is left to the caller's clearer message); its tensors are tensors."""
    if "model" not in state:
        return
    record = validate(state, CheckpointRecord, where, CheckpointError)
    for part in ("model", "ema"):
        tensors = getattr(record, part) or {}
        wrong = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
        if wrong:
            raise CheckpointError(f"{display(where)}: {part}: {listed(wrong)} are not tensors")
    if record.history and record.epoch is not None and len(record.history) != record.epoch + 1:
        raise CheckpointError(
            f"{display(where)}: epoch is {record.epoch} but the history has "
            f"{len(record.history)} rows"
        )


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` atomically: a reader sees the old file or the new one, never a torn one.

    Refuses non-finite weights (a diverged run never overwrites its last good checkpoint).
    """
    bad = nonfinite_tensors(state["model"]) if "model" in state else []
    if bad:
        raise TrainingDivergedError(
            f"not writing {display(path)}: non-finite values in {', '.join(bad[:5])}"
        )
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint safely (``weights_only=True``), with a clear error for a bad file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"{display(path)} is a folder; give its {CHECKPOINT_NAME} (a run's checkpoint file)"
        )
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "checkpoint does not exist", str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle of arbitrary objects, not a checkpoint
        reason = display(str(err).splitlines()[0] if str(err) else type(err).__name__)
        raise CheckpointError(
            f"checkpoint {display(path)} is unreadable or truncated (or not a mobilenets "
            f"checkpoint): {reason[:200]}"
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{display(path)} is not a mobilenets training checkpoint")
    check_checkpoint(state, path)
    return state


def rng_state() -> dict:
    """Every RNG a training step draws from (torch, CUDA, numpy, random), as tensors/ints."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [*random.getstate()[1], random.getstate()[0], random.getstate()[2]],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    *internal, version, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
