"""Classification: cross-entropy, top-1/top-5, one label per image."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mobilenets.data import build_dataset, parse_spec
from mobilenets.training.engine import EvalResult, collate_skipping_bad, evaluate, top1_score
from mobilenets.training.tasks.base import Task


class Classification(Task):
    name = "classification"
    metric_fields = ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5")
    headline = "val_top1"
    curves = (
        "accuracy",
        "accuracy (%)",
        (
            ("train_top1", "o-", "train"),
            ("val_top1", "s-", "validation top-1"),
            ("val_top5", "^--", "validation top-5"),
        ),
    )

    def collate(self, samples: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        return collate_skipping_bad(samples)

    def data_mean_std(self, data: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return parse_spec(data).mean_std

    def keeps_own_normalization(self, data: str) -> bool:
        """The digits are normalised by their own statistics even from weights."""
        return parse_spec(data).kind == "digits"

    def datasets(
        self, config: object, mean_std: tuple, eval_preprocess: Callable | None
    ) -> tuple[Dataset, Dataset]:
        common = {
            "mean_std": mean_std,
            "root": config.data_root,
            "cache_in_memory": config.cache_in_memory,
            "skip_bad_images": config.skip_bad_images,
        }
        train = build_dataset(
            config.data, "train", config.resolution, augment=config.augment, **common
        )
        val = build_dataset(
            config.data, "val", config.resolution, preprocess=eval_preprocess, **common
        )
        return train, val

    def criterion(self, config: object) -> Callable:
        return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
        return top1_score(outputs, targets)

    def evaluate(
        self,
        model: nn.Module,
        loader: DataLoader,
        *,
        device: torch.device,
        amp: bool,
        channels_last: bool,
        progress: bool,
        num_classes: int,
    ) -> EvalResult:
        return evaluate(
            model, loader, device=device, amp=amp, channels_last=channels_last, progress=progress
        )

    def row(self, train: object, result: EvalResult) -> dict:
        return {
            "train_loss": train.loss,
            "train_top1": train.top1,
            "val_loss": result.loss,
            "val_top1": result.top1,
            "val_top5": result.top5,
        }

    def log_line(self, row: dict) -> str:
        return (
            f"loss {row['train_loss']:.4f}  train top-1 {row['train_top1']:.2f}%  val top-1 "
            f"{row['val_top1']:.2f}%  top-5 {row['val_top5']:.2f}%"
        )

    def summary(self, history: list[dict], result: object | None = None) -> dict:
        last = history[-1]
        return {
            "val_top1": last["val_top1"],
            "val_top5": last["val_top5"],
            "val_loss": last["val_loss"],
            "best_val_top1": max(h["val_top1"] for h in history),
        }

    def scores_text(self, summary: dict) -> str:
        return f"top-1 {summary['val_top1']:.2f}%, top-5 {summary['val_top5']:.2f}%"
