"""``fit(config)``: train and evaluate one network, resumably, on one process or many.

Every epoch writes ``checkpoint.pt`` (atomically) and ``metrics.csv``; the end of the run writes
``summary.json`` and ``curves.png``. Under torchrun only rank 0 writes.

Speed on a CPU: ``channels_last`` is on by default, and the ``mobilenets`` command restarts
itself with glibc malloc tunables (see :mod:`mobilenets.training.malloc`); from Python, start the
interpreter with ``GLIBC_TUNABLES`` set to get the same 2–3×.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DistributedSampler

from mobilenets.complexity import profile
from mobilenets.data import build_dataset, check_classes
from mobilenets.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    OverwriteError,
    ZeroWorkError,
    display,
)
from mobilenets.fileio import (
    RunLock,
    check_writable_folder,
    clean_orphans,
    new_figure,
    nonfinite_tensors,
    save_figure,
    write_text_atomic,
)
from mobilenets.models.registry import create_model
from mobilenets.training import distributed
from mobilenets.training.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from mobilenets.training.config import TrainConfig
from mobilenets.training.engine import EvalResult, evaluate, make_loader, train_one_epoch
from mobilenets.training.malloc import malloc_tuned

#: What a training checkpoint must hold to be resumed.
CHECKPOINT_KEYS = ("config", "epoch", "model", "optimizer", "scheduler", "rng", "history")

METRIC_FIELDS = [
    "epoch",
    "lr",
    "train_loss",
    "train_top1",
    "val_loss",
    "val_top1",
    "val_top5",
    "epoch_seconds",
    "images_per_second",
    "skipped_images",
    "dropped_images",
    "val_images",
]


@dataclass
class FitResult:
    out: Path
    summary: dict
    model: nn.Module

    @property
    def top1(self) -> float:
        return self.summary["val_top1"]


def build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """The network a config describes, with ``num_classes`` outputs."""
    return create_model(
        config.model, width_mult=config.width_mult, num_classes=num_classes, **config.model_kwargs
    )


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv/FC weights only: not on BN, biases or depthwise filters."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            depthwise = (
                isinstance(module, nn.Conv2d)
                and module.groups > 1
                and (module.groups == module.in_channels)
            )
            if param.ndim <= 1 or depthwise or name == "bias":
                no_decay.append(param)
            else:
                decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay)
    lr = config.learning_rate
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=True)
    if config.optimizer == "rmsprop":  # the papers' optimizer (TF's eps sits inside the sqrt)
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=1e-3, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=lr)


def lr_factor(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Linear warmup from 1% of the peak, then cosine to 0, step (×0.1 at ½ and ¾), or
    exponential (×0.98 per epoch, the V2 paper's schedule)."""
    warmup = int(config.warmup_epochs * steps_per_epoch)
    total = config.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if config.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if config.schedule == "step":
            return 0.1 ** sum(progress >= m for m in (0.5, 0.75))
        return 0.98 ** (step / steps_per_epoch)

    return factor


def _seed_epoch(seed: int, epoch: int, generator: torch.Generator) -> None:
    """Per-epoch seeds: a resumed run draws the same shuffles and augmentations."""
    epoch_seed = seed * 100_003 + epoch
    torch.manual_seed(epoch_seed)
    np.random.seed(epoch_seed % 2**32)
    random.seed(epoch_seed)
    generator.manual_seed(epoch_seed)


def write_metrics(path: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_FIELDS)
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(path, buffer.getvalue())


def plot_curves(path: Path, history: list[dict], title: str) -> None:
    """Loss and top-1 against epoch, train and validation."""
    epochs = [h["epoch"] for h in history]
    fig = new_figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.plot(epochs, [h["train_top1"] for h in history], "o-", label="train")
    ax_acc.plot(epochs, [h["val_top1"] for h in history], "s-", label="validation top-1")
    ax_acc.plot(epochs, [h["val_top5"] for h in history], "^--", label="validation top-5")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def fit(config: TrainConfig, log: Callable[[str], None] = print) -> FitResult:
    """Train ``config.model`` on ``config.data`` and evaluate it every epoch.

    Resumes from ``out/checkpoint.pt`` with ``config.resume`` (a run killed at any point
    continues from its last finished epoch and ends with the same weights as an uninterrupted
    run on the CPU); refuses to overwrite a checkpoint without it. The run folder is checked
    for writing and locked (``out/.lock``) before any work: a second run into it is refused.
    """
    out = Path(config.out)
    device = distributed.pick_device(config.device, distributed.read_env())
    env = distributed.init(device)
    if not env.is_main:
        return _fit(config, log, out, device, env)
    check_writable_folder(out)
    with RunLock(out):
        clean_orphans(out)
        return _fit(config, log, out, device, env)


def _resume_state(config: TrainConfig, checkpoint_path: Path) -> dict | None:
    """The checkpoint to continue from (``None`` for a new run), after checking that it may be
    continued: asked for, the same configuration, finite weights."""
    if not checkpoint_path.exists():
        return None
    if not config.resume:
        raise OverwriteError(
            f"{display(checkpoint_path.parent)} already holds a checkpoint; pass --resume to "
            "continue that run or choose another --out"
        )
    state = load_checkpoint(checkpoint_path)
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise CheckpointError(
            f"{display(checkpoint_path)} is not a mobilenets training checkpoint (no "
            f"{', '.join(missing)}); cannot resume from it"
        )
    changed = TrainConfig.from_dict(state["config"]).differences(config)
    if changed:
        raise ConfigError(
            f"cannot resume {display(checkpoint_path)} with a different configuration: "
            + ", ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changed.items())
        )
    bad = nonfinite_tensors(state["model"])
    if bad:
        raise CheckpointError(
            f"cannot resume {display(checkpoint_path)}: its weights hold NaN or inf "
            f"({', '.join(bad[:3])}); start a new run"
        )
    return state


def check_train_classes(train: list[str], val: list[str], data: str) -> None:
    """Training and held-out classes are the same names, and there are at least two."""
    if len(train) < 2:
        raise DataError(
            f"{display(data)}: need at least 2 classes to train a classifier, found "
            f"{len(train)} ({', '.join(map(display, train)) or 'none'})"
        )
    check_classes(train, val, expected_from=f"{display(data)} train/", found_in="val/")


def _fit(
    config: TrainConfig,
    log: Callable[[str], None],
    out: Path,
    device: torch.device,
    env: distributed.DistEnv,
) -> FitResult:
    say = log if env.is_main else (lambda _msg: None)
    checkpoint_path = out / CHECKPOINT_NAME
    state = _resume_state(config, checkpoint_path)
    per_rank_batch = config.batch_size // env.world_size
    if per_rank_batch < 2:
        raise ConfigError(
            f"--batch-size {config.batch_size} over {env.world_size} processes gives "
            f"{per_rank_batch} image(s) per process; BatchNorm needs ≥ 2: use --batch-size ≥ "
            f"{2 * env.world_size}"
        )

    torch.manual_seed(config.seed)
    data_args = {
        "root": config.data_root,
        "cache_in_memory": config.cache_in_memory,
        "skip_bad_images": config.skip_bad_images,
    }
    train_set = build_dataset(
        config.data, "train", config.resolution, augment=config.augment, **data_args
    )
    val_set = build_dataset(config.data, "val", config.resolution, **data_args)
    classes = [str(c) for c in train_set.classes]
    check_train_classes(classes, [str(c) for c in val_set.classes], config.data)
    if len(val_set) == 0:
        raise ZeroWorkError(f"{display(config.data)}: the val split holds no images")

    model = build_model(config, len(classes))
    if config.sync_bn and env.enabled:
        model = distributed.convert_sync_batchnorm(model, device)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config, model)
    ema = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        if config.ema_decay
        else None
    )
    scaler = torch.amp.GradScaler("cuda") if config.amp and device.type == "cuda" else None
    train_model = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if env.enabled
        else model
    )

    generator = torch.Generator()  # seeds DataLoader workers, re-seeded every epoch
    # One sampler for one process and many: rank r takes positions r, r + w, ... of the same
    # seeded permutation, so w processes' batches together are the 1-process batch.
    train_sampler = DistributedSampler(
        train_set, env.world_size, env.rank, shuffle=True, seed=config.seed, drop_last=True
    )
    train_loader = make_loader(
        train_set,
        per_rank_batch,
        shuffle=False,
        workers=config.workers,
        generator=generator,
        sampler=train_sampler,
        drop_last=True,
    )
    # every validation sample on exactly one rank, no padding: exact all-reduced counts
    val_loader = make_loader(
        _Shard(val_set, env) if env.enabled else val_set,
        per_rank_batch,
        shuffle=False,
        workers=config.workers,
    )
    if len(train_loader) == 0:
        raise ZeroWorkError(
            f"{display(config.data)}: the train split has {len(train_set)} images, fewer than "
            f"one batch of {config.batch_size} (the last partial batch is dropped): lower "
            f"--batch-size to at most {len(train_set)}"
        )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, len(train_loader)))
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    start_epoch, history = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        start_epoch, history = state["epoch"] + 1, state["history"]
        say(f"resuming {checkpoint_path} after epoch {start_epoch}/{config.epochs}")

    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        say(
            f"training {config.model} (α={config.width_mult}, {config.resolution} px) on "
            f"{config.data}: {len(train_set):,} train / {len(val_set):,} val images, "
            f"{len(classes)} classes, {device}, world size {env.world_size}"
        )
        tuned = (
            "on"
            if malloc_tuned()
            else (
                "off (start Python with GLIBC_TUNABLES=... for 2-3x CPU speed; the mobilenets "
                "command does this itself)"
            )
        )
        say(
            f"memory: glibc malloc tunables {tuned}; channels_last "
            f"{'on' if config.channels_last else 'off'}; amp {'on' if config.amp else 'off'}"
        )
    writer = _tensorboard(out) if env.is_main else None
    eval_model = ema.module if ema is not None else model
    for epoch in range(start_epoch, config.epochs):
        _seed_epoch(config.seed, epoch, generator)
        train_sampler.set_epoch(epoch)
        lr = scheduler.get_last_lr()[0]
        stats = train_one_epoch(
            train_model,
            train_loader,
            criterion,
            optimizer,
            scheduler,
            device=device,
            amp=config.amp,
            scaler=scaler,
            channels_last=config.channels_last,
            ema=ema,
            progress=config.progress and env.is_main,
            description=f"epoch {epoch + 1}/{config.epochs}",
        )
        if stats.steps == 0:
            raise ZeroWorkError(
                f"epoch {epoch + 1} took no optimizer step: {stats.skipped} unreadable images "
                f"were skipped and {stats.dropped} were left in batches of fewer than 2; fix "
                "or remove the bad files, or lower --batch-size. Nothing was written"
            )
        if stats.dropped:
            say(
                f"epoch {epoch + 1}: {stats.dropped} readable images were in batches with fewer "
                "than 2 readable images on some process and were not trained on"
            )
        result = evaluate(
            eval_model,
            val_loader,
            device=device,
            amp=config.amp,
            channels_last=config.channels_last,
            progress=config.progress and env.is_main,
        )
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": stats.loss,
            "train_top1": stats.top1,
            "val_loss": result.loss,
            "val_top1": result.top1,
            "val_top5": result.top5,
            "epoch_seconds": stats.seconds,
            "images_per_second": stats.images_per_second,
            "skipped_images": stats.skipped + result.skipped,
            "dropped_images": stats.dropped,
            "val_images": result.images,
        }
        history.append(row)
        if env.is_main:
            save_checkpoint(
                _state(config, epoch, model, optimizer, scheduler, scaler, ema, history, classes),
                checkpoint_path,
            )
            write_metrics(out / "metrics.csv", history)
            if writer is not None:
                for key in METRIC_FIELDS[1:]:
                    writer.add_scalar(key, row[key], epoch + 1)
        if (epoch + 1) % config.log_every == 0 or epoch + 1 == config.epochs:
            say(
                f"epoch {epoch + 1}/{config.epochs}  loss {stats.loss:.4f}  train top-1 "
                f"{stats.top1:.2f}%  val top-1 {result.top1:.2f}%  top-5 {result.top5:.2f}%  "
                f"{row['images_per_second']:.0f} img/s"
            )
        distributed.barrier()

    if not history:
        raise CheckpointError(f"{display(checkpoint_path)} holds no finished epoch")
    summary = _summary(config, history, classes, model, device, env)
    if env.is_main:
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
        plot_curves(
            out / "curves.png",
            history,
            f"{config.model} α={config.width_mult} {config.resolution} px on {config.data}",
        )
        if writer is not None:
            writer.close()
    return FitResult(out, summary, eval_model)


class _Shard(torch.utils.data.Dataset):
    """Rank r of w takes samples r, r+w, r+2w, ...: every sample exactly once, no padding."""

    def __init__(self, dataset: torch.utils.data.Dataset, env: distributed.DistEnv) -> None:
        self.dataset, self.indices = dataset, range(env.rank, len(dataset), env.world_size)
        self.classes = getattr(dataset, "classes", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> object:
        return self.dataset[self.indices[index]]


def _state(
    config: TrainConfig,
    epoch: int,
    model: nn.Module,
    optimizer,
    scheduler,
    scaler,
    ema,
    history: list[dict],
    classes: list[str],
) -> dict:
    return {
        "format": "mobilenets.checkpoint/1",
        "config": config.to_dict(),
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "ema": ema.state_dict() if ema is not None else None,
        "rng": rng_state(),
        "history": history,
        "classes": classes,
    }


def _summary(
    config: TrainConfig,
    history: list[dict],
    classes: list[str],
    model: nn.Module,
    device: torch.device,
    env: distributed.DistEnv,
) -> dict:
    last = history[-1]
    prof = profile(build_model(config, len(classes)), config.resolution)
    return {
        "model": config.model,
        "width_mult": config.width_mult,
        "resolution": config.resolution,
        "data": config.data,
        "classes": classes,
        "epochs": len(history),
        "val_top1": last["val_top1"],
        "val_top5": last["val_top5"],
        "val_loss": last["val_loss"],
        "best_val_top1": max(h["val_top1"] for h in history),
        "val_images": last["val_images"],
        "params": prof.total_params,
        "macs": prof.macs,
        "train_seconds": sum(h["epoch_seconds"] for h in history),
        "images_per_second": last["images_per_second"],
        "device": str(device),
        "world_size": env.world_size,
        "malloc_tuned": malloc_tuned(),
        "torch": torch.__version__,
        "config": config.to_dict(),
    }


def _tensorboard(out: Path) -> object | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))


def load_run(checkpoint: str | Path) -> tuple[TrainConfig, nn.Module, list[str]]:
    """Rebuild the network of a checkpoint (EMA weights when the run kept them), after checking
    every entry it uses: a foreign, damaged or diverged checkpoint is a clear error."""
    from mobilenets.weights.io import load_state_dict_strictly

    state = load_checkpoint(checkpoint)
    where = display(checkpoint)
    for key in ("config", "model", "classes"):
        if key not in state:
            raise CheckpointError(
                f"{where} is not a mobilenets training checkpoint (no {key!r} entry)"
            )
    classes = state["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{where}: its 'classes' entry is not a list of class names")
    if not isinstance(state["config"], dict):
        raise CheckpointError(f"{where}: its 'config' entry is not a training configuration")
    config = TrainConfig.from_dict(state["config"])
    try:
        model = build_model(config, len(classes))
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{where}: its configuration does not build a network: {err}"
        ) from err
    weights = state["model"]
    if state.get("ema"):
        weights = {
            k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")
        }
    if not isinstance(weights, dict):
        raise CheckpointError(f"{where}: its 'model' entry is not a state dict")
    bad = nonfinite_tensors(weights)
    if bad:
        raise CheckpointError(
            f"{where} holds NaN or inf in {', '.join(bad[:3])}: refusing diverged weights"
        )
    load_state_dict_strictly(model, weights, where)
    return config, model.eval(), classes


__all__ = ["EvalResult", "FitResult", "TrainConfig", "build_model", "fit", "load_run"]
