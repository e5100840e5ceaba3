"""``TrainingState``: everything a run carries from one epoch to the next, in one object.

Model, optimizer, scheduler, AMP scaler, EMA, finished epochs, metric history, RNG states and the
network's record: :meth:`TrainingState.state_dict` is the checkpoint and
:meth:`TrainingState.load_state_dict` resumes from it (torch's ``Stateful`` protocol), so saving
and resuming cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mobilenets.export.pt2e import prepare_qat
from mobilenets.models.registry import create_model
from mobilenets.saved.checkpoint import rng_state, set_rng_state
from mobilenets.saved.info import NetworkInfo
from mobilenets.training import distributed
from mobilenets.training.config import TrainConfig

CHECKPOINT_FORMAT = "mobilenets.checkpoint/1"


def model_kwargs(config: TrainConfig, num_classes: int) -> dict:
    """The ``create_model`` keywords of the network a config describes (and those its task
    takes from the run's settings: a detector's input size)."""
    from mobilenets.training.tasks import task_for

    task = task_for(config.model).model_kwargs(config)
    return {
        "width_mult": config.width_mult,
        "num_classes": num_classes,
        **task,
        **config.model_kwargs,
    }


def build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """The network a config describes, with ``num_classes`` outputs (a supernet over
    ``config.supernet``'s space: its largest candidate, trained one drawn path per step)."""
    if config.supernet is not None:
        from mobilenets.models.supernet import SuperNet

        return SuperNet(config.supernet, seed=config.seed, **model_kwargs(config, num_classes))
    return create_model(config.model, **model_kwargs(config, num_classes))


def undecayed(model: nn.Module) -> set[str]:
    """The names of the parameters without weight decay: BN, biases, depthwise filters."""
    names = set()
    for prefix, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            depthwise = (
                isinstance(module, nn.Conv2d)
                and module.groups > 1
                and (module.groups == module.in_channels)
            )
            if param.ndim <= 1 or depthwise or name == "bias":
                names.add(f"{prefix}.{name}" if prefix else name)
    return names


def parameter_groups(
    model: nn.Module, weight_decay: float, reference: nn.Module | None = None
) -> list[dict]:
    """Weight decay on conv/FC weights only: not on BN, biases or depthwise filters (found in
    ``reference``, the float network, when ``model`` is its captured QAT graph)."""
    skip = undecayed(reference if reference is not None else model)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:  # a QAT detector's network is its graph (``graph.…``)
            undecayed_name = name in skip or name.removeprefix("graph.") in skip
            (no_decay if undecayed_name else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    config: TrainConfig, model: nn.Module, reference: nn.Module | None = None
) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay, reference)
    lr = config.learning_rate
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=True)
    if config.optimizer == "rmsprop":  # the papers' optimizer (TF's eps sits inside the sqrt)
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=1e-3, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=lr)


def warmup_epochs(config: TrainConfig) -> float:
    """The warmup a run gets: at most half of it (a warmup as long as the run would never reach
    the peak learning rate nor decay from it: ``--epochs 2`` with 3 warmup epochs ended at
    chance). An extended run keeps the warmup of its first segment."""
    first_epochs = config.extended_from[0] if config.extended_from else config.epochs
    return min(config.warmup, first_epochs / 2)


def lr_factor(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Linear warmup from 1% of the peak, then cosine to 0, step (×0.1 at ½ and ¾),
    exponential (×0.98 per epoch, the V2 paper's schedule) or poly ((1 − progress)^0.9,
    torchvision's segmentation reference and DeepLab's).

    A finished run extended with more epochs (``extended_from``) restarts the cosine or step
    schedule from the peak over the added epochs, without warmup (a warm restart, as SGDR);
    the exponential schedule simply goes on.
    """
    restarts = [e * steps_per_epoch for e in config.extended_from]
    warmup = int(warmup_epochs(config) * steps_per_epoch)
    ends = [*restarts, config.epochs * steps_per_epoch]

    def factor(step: int) -> float:
        start = max((r for r in restarts if r <= step), default=0)
        total = next(e for e in ends if e > start)  # where this segment of the schedule ends
        if start and config.schedule != "exponential":
            progress = (step - start) / max(1, total - start)
            if config.schedule == "cosine":
                return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
            if config.schedule == "poly":
                return (1 - min(progress, 1.0)) ** 0.9
            return 0.1 ** sum(progress >= m for m in (0.5, 0.75))
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if config.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if config.schedule == "step":
            return 0.1 ** sum(progress >= m for m in (0.5, 0.75))
        if config.schedule == "poly":
            return (1 - min(progress, 1.0)) ** 0.9
        return 0.98 ** (step / steps_per_epoch)

    return factor


@dataclass
class TrainingState:
    """A run between two epochs. ``epoch`` counts the finished ones."""

    config: TrainConfig
    info: NetworkInfo
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None = None
    ema: AveragedModel | None = None
    epoch: int = 0
    history: list[dict] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        config: TrainConfig,
        info: NetworkInfo,
        device: torch.device,
        env: distributed.DistEnv,
        steps_per_epoch: int,
        initialize: Callable[[nn.Module], None] | None = None,
    ) -> TrainingState:
        """A fresh run: the network of ``info`` on ``device`` (its weights set by ``initialize``
        when given, e.g. from ``--weights``), its optimizer and schedule."""
        model = build_model(config, info.num_classes)
        if initialize is not None:
            initialize(model)
        if config.sync_bn and env.enabled:
            model = distributed.convert_sync_batchnorm(model, device)
        model.to(device)
        reference = None
        if config.qat:  # the trained network, fake-quantized (PT2E)
            reference = model
            size = info.input_size or config.resolution
            example = torch.randn(2, getattr(model, "in_chans", 3), size, size, device=device)
            model = prepare_qat(model, example)
        if config.channels_last and not config.qat:  # a captured graph keeps its layout (DDP's
            model.to(memory_format=torch.channels_last)  # buckets would not match its grads)
        optimizer = build_optimizer(config, model, reference)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, steps_per_epoch))
        ema = None
        if config.ema_decay:
            average = get_ema_multi_avg_fn(config.ema_decay)
            ema = AveragedModel(model, multi_avg_fn=average, use_buffers=True)
        use_scaler = config.amp and device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        return cls(config, info, model, optimizer, scheduler, scaler, ema)

    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated and saved for inference: the EMA weights when the run keeps them."""
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self) -> dict:
        """The checkpoint (``epoch`` is the last finished epoch, counted from 0)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "info": self.info.to_dict(),
            "epoch": self.epoch - 1,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": rng_state(),
            "history": self.history,
            "classes": list(self.info.classes),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint written by :meth:`state_dict`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        self.epoch, self.history = state["epoch"] + 1, list(state["history"])
        step = self.scheduler.last_epoch  # the learning rate this step has in this schedule
        for group, base, factor in zip(
            self.optimizer.param_groups,
            self.scheduler.base_lrs,
            self.scheduler.lr_lambdas,
            strict=True,
        ):
            group["lr"] = base * factor(step)
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
