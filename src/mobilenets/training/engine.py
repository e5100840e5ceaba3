"""One epoch of training and an exact evaluation (top-1, top-5, loss), DDP-aware.

Batches are ``(images, targets, indices, n_skipped)``: the indices let evaluation write one
prediction per image, and ``n_skipped`` counts unreadable images dropped with
``--skip-bad-images``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate
from tqdm.auto import tqdm

from mobilenets.errors import TrainingDivergedError, display


def progress_off(progress: bool) -> bool | None:
    """tqdm's ``disable``: off when asked, else ``None``: bars only when stderr is a terminal
    (a redirected log gets no carriage returns and cursor escapes)."""
    return True if not progress else None


def batches(loader: Iterable, description: str, progress: bool) -> tqdm:
    """One pass over ``loader`` behind a progress bar, its worker processes stopped as soon as
    the pass ends, however it ends (:func:`_stopping`)."""
    try:
        total = len(loader)  # type: ignore[arg-type]
    except TypeError:  # an iterable data set without a length
        total = None
    return tqdm(
        _stopping(loader),
        total=total,
        desc=description,
        leave=False,
        disable=progress_off(progress),
        unit="batch",
    )


def _stopping(loader: Iterable) -> Iterator:
    """``loader``'s items; its worker processes are stopped when the pass ends. Left to
    themselves, the workers of a pass that a worker's error ended are stopped at the next
    garbage collection (the re-raised error's traceback holds the iterator in a reference
    cycle), when the queues they wait on may already be closed: each is then waited for 5 s
    and killed (10.3 s after a ``fit`` that a bad image ended, with a worker for each of its
    two loaders; 0.2 s now)."""
    iterator = iter(loader)
    try:
        yield from iterator
    finally:
        stop = getattr(iterator, "_shutdown_workers", None)  # torch's own, idempotent
        if stop is not None:
            stop()


def log_to_stderr(message: str) -> None:
    """The default log of training: stderr, so stdout carries only results (tables, JSON); one
    line per message, whatever names it holds (control characters escaped)."""
    for line in message.split("\n"):  # the message's own lines; names inside are escaped
        print(display(line), file=sys.stderr, flush=True)


class WithIndex(Dataset):
    """Wrap a dataset so each sample also carries its index (``None`` samples stay ``None``)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple | None:
        sample = self.dataset[index]
        return None if sample is None else (*sample, index)


def collate_skipping_bad(batch: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Collate ``(image, target, index)`` samples, dropping the ``None`` of unreadable images:
    returns (images, targets, indices, number skipped)."""
    good = [sample for sample in batch if sample is not None]
    skipped = len(batch) - len(good)
    if not good:
        empty = torch.empty(0, dtype=torch.long)
        return torch.empty(0), empty, empty, skipped
    images, targets, indices = default_collate(good)
    return images, targets, indices, skipped


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    workers: int = 0,
    generator: torch.Generator | None = None,
    sampler: Sampler | None = None,
    drop_last: bool = False,
    collate: Callable[[list], tuple] = collate_skipping_bad,
) -> DataLoader:
    """A DataLoader over ``WithIndex(dataset)`` with the skipping collate (or the task's)."""
    return DataLoader(
        WithIndex(dataset),
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        generator=generator,
        drop_last=drop_last,
        persistent_workers=False,
    )


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on the CPU, fp16 on CUDA (with a GradScaler), or nothing."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def _to(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@dataclass
class EpochStats:
    loss: float
    top1: float
    images: int
    seconds: float
    skipped: int
    steps: int = 0  # optimizer steps taken
    dropped: int = 0  # good images in batches too small to train BatchNorm (< 2 per process)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def _all_reduce(values: list[float], device: torch.device, op: str = "sum") -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM)
    return t.tolist()


def top1_score(logits: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    """(correct, counted) of a classification batch."""
    return int((logits.argmax(1) == targets).sum()), len(targets)


def _grad_norm(model: nn.Module) -> float:
    """The global L2 norm of the gradients (after DDP's all-reduce: the same on every rank)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.nn.utils.get_total_norm(grads))


def _backward(loss: torch.Tensor, model: nn.Module, scaler: torch.amp.GradScaler | None) -> float:
    """Gradients of ``loss``; their norm (0 under fp16's scaler, which skips inf steps itself)."""
    if scaler is not None:
        scaler.scale(loss).backward()
        return 0.0
    loss.backward()
    return _grad_norm(model)


def _optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    if scaler is not None:  # fp16: the scaler skips steps with inf gradients
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def _check_finite(loss: float, norm: float, where: str, lr: float) -> None:
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise TrainingDivergedError(
            f"{where}: the loss is {loss:.4g} and the gradient norm {norm:.4g} at lr {lr:.3g}: "
            "the run diverged. Nothing was written for this epoch; lower --lr (or raise "
            "--warmup-epochs) and --resume from the last good checkpoint, or start again"
        )


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    device: torch.device,
    amp: bool = False,
    scaler: torch.amp.GradScaler | None = None,
    channels_last: bool = False,
    ema: nn.Module | None = None,
    progress: bool = True,
    description: str = "train",
    train_mode: Callable[[nn.Module], None] | None = None,
    teacher: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    score: Callable[[object, torch.Tensor], tuple[int, int]] | None = None,
    forward: Callable[[nn.Module, torch.Tensor, object], object] | None = None,
) -> EpochStats:
    """One pass over ``loader``, stepping the scheduler every batch; loss and top-1 are over
    every process's samples under DDP.

    Every process takes the same optimizer steps: a batch is trained only when every rank has
    ≥ 2 readable images (BatchNorm needs 2), else every rank drops it.
    A non-finite loss or gradient norm raises :class:`TrainingDivergedError` before the
    optimizer steps, so the weights stay the last finite ones.

    ``train_mode`` runs after ``model.train()`` (e.g. BatchNorm kept in eval mode); with a
    ``teacher`` (images, dataset indices → logits) the loss is ``criterion(logits, targets,
    teacher_logits)``; ``score`` (outputs, targets → correct, counted) makes ``top1``;
    ``forward`` (model, inputs, targets → outputs: a detector's losses) replaces ``model``."""
    model.train()
    if train_mode is not None:
        train_mode(model)
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = counted = images = skipped = steps = dropped = 0
    start = time.perf_counter()
    bar = batches(loader, description, progress)
    for x, y, idx, n_skipped in bar:
        skipped += n_skipped
        (fewest,) = _all_reduce([len(y)], device, op="min")
        if fewest < 2:
            dropped += len(y)
            continue
        x, y = _to(x, device, channels_last), y.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x) if forward is None else forward(model, x, y)
            loss = (
                criterion(logits, y) if teacher is None else criterion(logits, y, teacher(x, idx))
            )
        optimizer.zero_grad(set_to_none=True)
        norm = _backward(loss, model, scaler)
        value = loss.item()
        _check_finite(value, norm, f"{description}, step {steps + 1}", scheduler.get_last_lr()[0])
        _optimizer_step(optimizer, scaler)
        scheduler.step()
        steps += 1
        if ema is not None:
            ema.update_parameters(model)
        loss_sum += loss.detach().double().cpu() * len(y)
        hits, count = (score or top1_score)(logits, y)
        correct, counted, images = correct + hits, counted + count, images + len(y)
        bar.set_postfix(loss=f"{value:.3f}", lr=f"{scheduler.get_last_lr()[0]:.3g}")
    seconds = time.perf_counter() - start
    loss_total, correct, counted, images, skipped, dropped = _all_reduce(
        [float(loss_sum), correct, counted, images, skipped, dropped], device
    )
    return EpochStats(
        loss_total / max(images, 1),
        100 * correct / max(counted, 1),
        int(images),
        seconds,
        int(skipped),
        steps,
        int(dropped),
    )


@dataclass
class EvalResult:
    """Exact evaluation counts (all-reduced across processes under DDP)."""

    loss: float
    top1: float
    top5: float
    images: int
    skipped: int = 0
    predictions: list[tuple[int, int, int, float]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {
            "loss": self.loss,
            "top1": self.top1,
            "top5": self.top5,
            "images": self.images,
            "skipped": self.skipped,
        }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    amp: bool = False,
    channels_last: bool = False,
    keep_predictions: bool = False,
    progress: bool = True,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> EvalResult:
    """Top-1, top-5 (percent) and mean cross-entropy over every sample of ``loader``.

    Under DDP each process evaluates its shard and the integer counts are all-reduced, so with a
    sampler that gives every sample to exactly one rank the result equals one process's.
    """
    model.eval()
    loss_fn = loss_fn or nn.CrossEntropyLoss(reduction="sum")
    loss_sum = correct1 = correct5 = images = skipped = 0.0
    predictions = []
    for x, y, idx, n_skipped in batches(loader, "eval", progress):
        skipped += n_skipped
        if len(y) == 0:
            continue
        x, y = _to(x, device, channels_last), y.to(device)
        with autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        loss_sum += float(loss_fn(logits, y))
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top == y[:, None]
        correct1 += float(hits[:, 0].sum())
        correct5 += float(hits.any(1).sum())
        images += len(y)
        if keep_predictions:
            conf = logits.softmax(1).max(1)
            for i, label, pred, c in zip(
                idx.tolist(), y.tolist(), conf.indices.tolist(), conf.values.tolist(), strict=True
            ):
                predictions.append((i, label, pred, c))
    loss_sum, correct1, correct5, images, skipped = _all_reduce(
        [loss_sum, correct1, correct5, images, skipped], device
    )
    n = max(images, 1)
    return EvalResult(
        loss_sum / n, 100 * correct1 / n, 100 * correct5 / n, int(images), int(skipped), predictions
    )
