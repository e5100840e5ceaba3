"""``fit(config)``: train and evaluate one network, resumably, on one process or many.

Every epoch writes ``checkpoint.pt`` (atomically) and ``metrics.csv``; the end of the run writes
``summary.json`` and ``curves.png``. Under torchrun only rank 0 writes.

Speed on a CPU: ``channels_last`` is on by default, and the ``mobilenets`` command restarts
itself with glibc malloc tunables (see :mod:`mobilenets.malloc`); from Python, start the
interpreter with ``GLIBC_TUNABLES`` set to get the same 2–3×.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mobilenets.complexity import profile
from mobilenets.data import check_classes
from mobilenets.data.holdout import split_holdout
from mobilenets.data.kinds import check_data_task
from mobilenets.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    OverwriteError,
    ZeroWorkError,
    display,
)
from mobilenets.export.pt2e import QAT_SCHEME, set_qat_phase
from mobilenets.fileio import (
    RunLock,
    check_writable_folder,
    clean_orphans,
    nonfinite_tensors,
    write_text_atomic,
)
from mobilenets.malloc import malloc_tuned
from mobilenets.saved.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from mobilenets.saved.info import NetworkInfo
from mobilenets.training import distributed
from mobilenets.training.config import TrainConfig
from mobilenets.training.engine import (
    EpochStats,
    EvalResult,
    log_to_stderr,
    make_loader,
    train_one_epoch,
)
from mobilenets.training.finetune import (
    Teacher,
    distillation_loss,
    load_backbone_weights,
    load_initial_weights,
    load_network,
    set_frozen,
    start_from,
    train_modes,
)
from mobilenets.training.state import (
    TrainingState,
    build_model,
    build_optimizer,
    lr_factor,
    model_kwargs,
    parameter_groups,
    warmup_epochs,
)
from mobilenets.training.tasks import Task, task_for

#: What a training checkpoint must hold to be resumed.
CHECKPOINT_KEYS = ("config", "epoch", "model", "optimizer", "scheduler", "rng", "history")


@dataclass
class FitResult:
    out: Path
    summary: dict
    model: nn.Module

    @property
    def top1(self) -> float:
        return self.summary["val_top1"]

    @property
    def miou(self) -> float:
        return self.summary["val_miou"]


def _seed_epoch(seed: int, epoch: int, generator: torch.Generator) -> None:
    """Per-epoch seeds: a resumed run draws the same shuffles and augmentations."""
    epoch_seed = seed * 100_003 + epoch
    torch.manual_seed(epoch_seed)
    np.random.seed(epoch_seed % 2**32)
    random.seed(epoch_seed)
    generator.manual_seed(epoch_seed)


def write_metrics(path: Path, history: list[dict], fields: list[str]) -> None:
    """``metrics.csv``: one row per epoch, the task's columns (``Task.fields``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(path, buffer.getvalue())


def fit(config: TrainConfig, log: Callable[[str], None] = log_to_stderr) -> FitResult:
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
    check_writable_folder(out, data=[config.data])
    with RunLock(out):
        clean_orphans(out)
        return _fit(config, log, out, device, env)


def _start_record(
    config: TrainConfig, saved: dict | None, source: tuple | None
) -> tuple[tuple | None, str | None]:
    """The normalisation and the record's ``source`` of a run from weights: the weights' own
    when it starts, its checkpoint's when it resumes."""
    if source is not None:
        info = source[2]
        origin = f"mobilenets training run {config.out}, fine-tuned from {info.source}"
        return (info.mean, info.std), origin
    if saved is not None and config.weights and isinstance(saved.get("info"), dict):
        info = saved["info"]
        return (tuple(info["mean"]), tuple(info["std"])), info.get("source")
    return None, None


def _wrap(model: nn.Module, device: torch.device, env: distributed.DistEnv) -> nn.Module:
    """DDP around what trains (a supernet's step leaves every other path's layers unused)."""
    if not env.enabled:
        return model
    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=hasattr(model, "set_epoch"),
    )


def _teacher(config: TrainConfig, info: NetworkInfo, device: torch.device) -> Teacher | None:
    """The run's teacher (``--teacher``), its logits cached when nothing is augmented."""
    if config.teacher is None:
        return None
    model, teacher_info = load_network(config.teacher, "--teacher")
    return Teacher(
        model,
        teacher_info,
        info,
        device=device,
        channels_last=config.channels_last,
        cache=not config.augment,
    )


def _resume_state(config: TrainConfig, checkpoint_path: Path) -> tuple[TrainConfig, dict | None]:
    """The configuration to run and the checkpoint to continue from (``None`` for a new run),
    after checking that it may be continued: asked for, the same configuration (or a finished
    run extended with more ``--epochs``), finite weights."""
    if not checkpoint_path.exists():
        return config, None
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
    saved = TrainConfig.from_dict(state["config"])
    if config.weights is not None:  # the network came from the weights when the run started
        config = replace(
            config,
            model=config.model or saved.model,
            width_mult=saved.width_mult if config.width_mult is None else config.width_mult,
            model_kwargs={**saved.model_kwargs, **config.model_kwargs},
        )
    config = _extension(saved, config, finished=state["epoch"] + 1 >= saved.epochs)
    changed = saved.differences(config)
    for key in ("epochs", "extended_from"):  # checked by _extension
        changed.pop(key, None)
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
    return config, state


def _extension(saved: TrainConfig, asked: TrainConfig, finished: bool) -> TrainConfig:
    """``asked`` as it continues ``saved``: the same epochs (a killed run), or more epochs for a
    finished one. The added epochs get a learning-rate schedule of their own
    (``extended_from``, see :func:`~mobilenets.training.state.lr_factor`)."""
    if asked.epochs == saved.epochs:
        return replace(asked, extended_from=saved.extended_from)
    if asked.epochs < saved.epochs or not finished:
        raise ConfigError(
            f"cannot resume a {saved.epochs}-epoch run with --epochs {asked.epochs}: resume it "
            f"with --epochs {saved.epochs}"
            + ("; once finished, it can be extended with more epochs" if not finished else "")
        )
    return replace(asked, extended_from=[*saved.extended_from, saved.epochs])


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
    config, saved = _resume_state(config, checkpoint_path)
    source = start_from(config) if config.weights and saved is None else None
    if source is not None:
        config = source[0]
    task = task_for(config.model)
    check_data_task(config.data, config.model or "mobilenet_v1", task.name)
    if config.teacher and task.name != "classification":
        raise ConfigError(f"--teacher distils a classifier; {config.model} is a {task.name} model")
    data = RunData.build(config, env, task, *_start_record(config, saved, source))
    initialize = None
    if source is not None:
        _, network, source_info = source

        def initialize(model: nn.Module) -> None:
            if source_info.task != task.name:  # a classifier's weights start the backbone
                load_backbone_weights(model, network, say)
            else:
                load_initial_weights(model, network, source_info.classes, data.info.classes, say)

    state = TrainingState.create(config, data.info, device, env, len(data.train_loader), initialize)
    teacher = _teacher(config, data.info, device)
    if saved is not None:
        state.load_state_dict(saved)
        extending = config.extended_from and state.epoch == config.extended_from[-1]
        what = "extending the finished run" if extending else "resuming"
        say(f"{what} {display(checkpoint_path)} after epoch {state.epoch}/{config.epochs}")
    say(_announcement(config, data, device, env, source[2] if source else None))
    train_model, frozen = None, None
    writer = _tensorboard(out) if env.is_main else None
    for epoch in range(state.epoch, config.epochs):
        if frozen != (epoch < config.freeze_epochs):  # DDP wraps what trains in this phase
            frozen = epoch < config.freeze_epochs
            set_frozen(state.model, frozen)
            train_model = _wrap(state.model, device, env)
        if config.qat:
            _qat_phase(state.model, config, epoch, say)
        row = _train_epoch(state, train_model, data, epoch, device, env, say, frozen, teacher, task)
        state.history.append(row)
        state.epoch = epoch + 1
        if env.is_main:
            save_checkpoint(state.state_dict(), checkpoint_path)
            write_metrics(out / "metrics.csv", state.history, task.fields)
            for key in task.fields[1:] if writer is not None else ():
                writer.add_scalar(key, row[key], epoch + 1)
        if (epoch + 1) % config.log_every == 0 or epoch + 1 == config.epochs:
            say(
                f"epoch {epoch + 1}/{config.epochs}  {task.log_line(row)}  "
                f"{row['images_per_second']:.0f} img/s"
            )
        distributed.barrier()
    if not state.history:
        raise CheckpointError(f"{display(checkpoint_path)} holds no finished epoch")
    summary = _summary(state, device, env, task)
    if env.is_main:
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
        title = f"{config.model} α={config.width_mult} {config.resolution} px on {config.data}"
        task.plot(out / "curves.png", state.history, title)
        mean_std = (data.info.mean, data.info.std)
        task.picture(out / "predictions.png", state.eval_model, data.val_set, mean_std, device)
        if writer is not None:
            writer.close()
    return FitResult(out, summary, state.eval_model)


def _qat_phase(model: nn.Module, config: TrainConfig, epoch: int, say: Callable) -> None:
    """QAT's schedule for ``epoch`` (torchvision's reference): BatchNorm statistics, then
    activation ranges, frozen from their epochs on; each change said once."""
    bn, observers = config.qat_phases
    set_qat_phase(model, freeze_bn=epoch >= bn, freeze_observers=epoch >= observers)
    for start, what in ((bn, "BatchNorm statistics"), (observers, "activation ranges")):
        if epoch == start:
            say(f"QAT: {what} frozen from epoch {epoch + 1} on")


@dataclass
class RunData:
    """The datasets and loaders of a run, checked: classes by name, at least one batch."""

    info: NetworkInfo  # the network's record, without weights yet
    train_set: Dataset
    val_set: Dataset
    train_loader: DataLoader
    val_loader: DataLoader
    sampler: DistributedSampler
    generator: torch.Generator  # seeds DataLoader workers, re-seeded every epoch

    @classmethod
    def build(
        cls,
        config: TrainConfig,
        env: distributed.DistEnv,
        task: Task,
        norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
        origin: str | None = None,
    ) -> RunData:
        """The run's data, normalised by the data's statistics or ``norm`` (the mean and std of
        the weights a run starts from, except on the digits, which keep their own); ``origin``
        is the network record's ``source``."""
        per_rank_batch = config.batch_size // env.world_size
        if per_rank_batch < 2:
            raise ConfigError(
                f"--batch-size {config.batch_size} over {env.world_size} processes gives "
                f"{per_rank_batch} image(s) per process; BatchNorm needs ≥ 2: use "
                f"--batch-size ≥ {2 * env.world_size}"
            )
        torch.manual_seed(config.seed)
        mean, std = task.data_mean_std(config.data)
        if norm is not None and not task.keeps_own_normalization(config.data):
            mean, std = norm
        info = NetworkInfo(
            config.model,
            input_size=config.resolution,
            mean=mean,
            std=std,
            source=origin or f"mobilenets training run {config.out}",
            data=config.data,
        )
        preprocess = info.eval_transform() if task.name == "classification" else None
        train_set, val_set = task.datasets(config, (mean, std), preprocess)
        if config.holdout:
            train_set = split_holdout(train_set, config.holdout, config.seed)[1]
        classes = [str(c) for c in train_set.classes]
        check_train_classes(classes, [str(c) for c in val_set.classes], config.data)
        if len(val_set) == 0:
            raise ZeroWorkError(f"{display(config.data)}: the val split holds no images")
        kwargs = model_kwargs(config, len(classes))
        info = replace(info, kwargs=kwargs, classes=tuple(classes))
        generator = torch.Generator()
        # One sampler for one process and many: rank r takes positions r, r + w, ... of the
        # same seeded permutation, so w processes' batches together are the 1-process batch.
        sampler = DistributedSampler(
            train_set, env.world_size, env.rank, shuffle=True, seed=config.seed, drop_last=True
        )
        train_loader = make_loader(
            train_set,
            per_rank_batch,
            shuffle=False,
            workers=config.workers,
            generator=generator,
            sampler=sampler,
            drop_last=True,
            collate=task.collate,
        )
        # every validation sample on exactly one rank, no padding: exact all-reduced counts
        val_loader = make_loader(
            _Shard(val_set, env) if env.enabled else val_set,
            per_rank_batch,
            shuffle=False,
            workers=config.workers,
            collate=task.collate,
        )
        if len(train_loader) == 0:
            raise ZeroWorkError(
                f"{display(config.data)}: the train split has {len(train_set)} images, fewer "
                f"than one batch of {config.batch_size} (the last partial batch is dropped): "
                f"lower --batch-size to at most {len(train_set)}"
            )
        return cls(info, train_set, val_set, train_loader, val_loader, sampler, generator)


def _train_epoch(
    state: TrainingState,
    train_model: nn.Module,
    data: RunData,
    epoch: int,
    device: torch.device,
    env: distributed.DistEnv,
    say: Callable[[str], None],
    frozen: bool = False,
    teacher: Teacher | None = None,
    task: Task | None = None,
) -> dict:
    """Train one epoch (only the classifier when ``frozen``; distilled from ``teacher``),
    evaluate, and return its row of ``metrics.csv``."""
    config = state.config
    _seed_epoch(config.seed, epoch, data.generator)
    data.sampler.set_epoch(epoch)
    if hasattr(state.model, "set_epoch"):  # a supernet's paths, seeded as the sampler's order
        state.model.set_epoch(epoch)
    lr = state.scheduler.get_last_lr()[0]
    progress = config.progress and env.is_main
    task = task or task_for(config.model)
    criterion = task.criterion(config)
    if teacher is not None:
        criterion = functools.partial(
            distillation_loss,
            temperature=config.distill_temperature,
            weight=config.distill_weight,
            label_smoothing=config.label_smoothing,
        )
    stats = train_one_epoch(
        train_model,
        data.train_loader,
        criterion,
        state.optimizer,
        state.scheduler,
        device=device,
        amp=config.amp,
        scaler=state.scaler,
        channels_last=config.channels_last,
        ema=state.ema,
        progress=progress,
        description=f"epoch {epoch + 1}/{config.epochs}" + (" (head only)" if frozen else ""),
        train_mode=train_modes(frozen, config.freeze_bn),
        teacher=teacher,
        score=task.score,
        forward=task.forward,
    )
    _check_work(stats, epoch, say)
    result = task.evaluate(
        state.eval_model,
        data.val_loader,
        device=device,
        amp=config.amp,
        channels_last=config.channels_last,
        progress=progress,
        num_classes=data.info.num_classes,
    )
    return {
        "epoch": epoch + 1,
        "lr": lr,
        **task.row(stats, result),
        "epoch_seconds": stats.seconds,
        "images_per_second": stats.images_per_second,
        "skipped_images": stats.skipped + result.skipped,
        "dropped_images": stats.dropped,
        "val_images": result.images,
    }


def _check_work(stats: EpochStats, epoch: int, say: Callable[[str], None]) -> None:
    """An epoch without an optimizer step is an error; dropped images are said."""
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


def recipe(config: TrainConfig) -> dict:
    """How the run trains, as stated in ``summary.json``: from scratch or fine-tuned from
    weights (with the learning rate and warmup that resolved), and any distillation."""
    out = {
        "start": "weights" if config.weights else "scratch",
        "lr": config.learning_rate,
        "warmup_epochs": warmup_epochs(config),
        "schedule": config.schedule,
    }
    if config.weights:
        out.update(
            weights=config.weights,
            freeze_epochs=config.freeze_epochs,
            freeze_bn=config.freeze_bn,
        )
    if config.teacher:
        out.update(
            teacher=config.teacher,
            distill_temperature=config.distill_temperature,
            distill_weight=config.distill_weight,
        )
    return out


def _announcement(
    config: TrainConfig,
    data: RunData,
    device: torch.device,
    env: distributed.DistEnv,
    source: NetworkInfo | None = None,
) -> str:
    tuned = (
        "on"
        if malloc_tuned()
        else (
            "off (start Python with GLIBC_TUNABLES=... for 2-3x CPU speed; the mobilenets "
            "command does this itself)"
        )
    )
    clamped = warmup_epochs(config) < config.warmup
    steps = recipe(config)
    bn = "frozen" if config.freeze_bn else "trained"
    start = (
        f"fine-tuning from {display(config.weights)} "
        f"({display(source.source) if source else 'resumed'}): lr "
        f"{steps['lr']:g}, warmup {steps['warmup_epochs']:g} epochs, head only for "
        f"{config.freeze_epochs} epochs, BN statistics {bn}\n"
        if config.weights
        else ""
    )
    if config.teacher:
        start += (
            f"distilling from {display(config.teacher)}: T={config.distill_temperature:g}, "
            f"W={config.distill_weight:g}\n"
        )
    if config.qat:
        bn_from, observers_from = config.qat_phases
        start += (
            f"quantization-aware training: {QAT_SCHEME}; BatchNorm statistics frozen after "
            f"epoch {bn_from}, activation ranges after epoch {observers_from}\n"
        )
    if config.supernet is not None:
        start += "a single-path supernet: one path drawn uniformly from its space per step\n"
    if config.holdout:
        start += f"{config.holdout} training images held out (seed {config.seed})\n"
    warning = (
        f"warning: --warmup-epochs {config.warmup:g} is more than half of --epochs "
        f"{config.epochs}; warming up for {warmup_epochs(config):g} epochs instead\n"
        if clamped
        else ""
    )
    return (
        warning
        + start
        + (
            f"training {config.model} (α={config.width_mult}, {config.resolution} px) on "
            f"{display(config.data)}: {len(data.train_set):,} train / "
            f"{len(data.val_set):,} val images, "
            f"{data.info.num_classes} classes, {device}, world size {env.world_size}\n"
            f"memory: glibc malloc tunables {tuned}; channels_last "
            f"{'on' if config.channels_last else 'off'}; amp {'on' if config.amp else 'off'}"
        )
    )


class _Shard(torch.utils.data.Dataset):
    """Rank r of w takes samples r, r+w, r+2w, ...: every sample exactly once, no padding."""

    def __init__(self, dataset: torch.utils.data.Dataset, env: distributed.DistEnv) -> None:
        self.dataset, self.indices = dataset, range(env.rank, len(dataset), env.world_size)
        self.classes = getattr(dataset, "classes", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> object:
        return self.dataset[self.indices[index]]


def _summary(
    state: TrainingState, device: torch.device, env: distributed.DistEnv, task: Task
) -> dict:
    """The run's results and the trained network's complexity (profiled on that network)."""
    config, history, last = state.config, state.history, state.history[-1]
    network = build_model(config, state.info.num_classes) if config.qat else state.eval_model
    prof = profile(network, config.resolution)
    return {
        "model": config.model,
        "task": task.name,
        "width_mult": config.width_mult,
        "resolution": config.resolution,
        "data": config.data,
        "classes": list(state.info.classes),
        "epochs": len(history),
        **task.summary(history),
        "val_images": last["val_images"],
        "params": prof.total_params,
        "macs": prof.macs,
        "train_seconds": sum(h["epoch_seconds"] for h in history),
        "images_per_second": last["images_per_second"],
        "device": str(device),
        "world_size": env.world_size,
        "malloc_tuned": malloc_tuned(),
        "torch": torch.__version__,
        "recipe": recipe(config),
        **({"quantization": QAT_SCHEME} if config.qat else {}),
        "config": config.to_dict(),
    }


def _tensorboard(out: Path) -> object | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))


__all__ = [
    "EvalResult",
    "FitResult",
    "TrainConfig",
    "build_model",
    "build_optimizer",
    "fit",
    "lr_factor",
    "parameter_groups",
]
