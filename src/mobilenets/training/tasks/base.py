"""The interface every task implements (see :mod:`mobilenets.training.tasks`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mobilenets.fileio import new_figure, save_figure

#: Columns every task's ``metrics.csv`` has, around its own.
COMMON_FIELDS = [
    "epoch_seconds",
    "images_per_second",
    "skipped_images",
    "dropped_images",
    "val_images",
]


class Task(ABC):
    """One task's part of training: each subclass implements every abstract method."""

    name: str = ""
    #: ``metrics.csv`` columns after ``epoch`` and ``lr``, before :data:`COMMON_FIELDS`.
    metric_fields: tuple[str, ...] = ()
    #: the summary's headline figure (``val_top1``, ``val_miou``)
    headline: str = ""

    @property
    def fields(self) -> list[str]:
        return ["epoch", "lr", *self.metric_fields, *COMMON_FIELDS]

    @abstractmethod
    def collate(self, samples: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Batch ``(sample, target, index)`` triples: (inputs, targets, indices, skipped)."""

    @abstractmethod
    def datasets(
        self, config: object, mean_std: tuple, eval_preprocess: Callable | None
    ) -> tuple[Dataset, Dataset]:
        """The run's train and val datasets, normalised by ``mean_std``."""

    @abstractmethod
    def data_mean_std(self, data: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The data's own normalisation (mean, std per channel)."""

    @abstractmethod
    def keeps_own_normalization(self, data: str) -> bool:
        """Whether ``data`` keeps its own normalisation even when the run starts from weights."""

    def model_kwargs(self, config: object) -> dict:
        """Keywords the network of this task takes from the run's settings (a detector's
        input size)."""
        return {}

    def forward(self, model: nn.Module, x: torch.Tensor, y: object) -> object:
        """A training step's outputs, which :meth:`criterion` turns into the loss (a
        detector computes its losses itself from the targets)."""
        return model(x)

    @abstractmethod
    def criterion(self, config: object) -> Callable:
        """The training loss: (outputs, targets) → a scalar."""

    @abstractmethod
    def score(self, outputs: object, targets: torch.Tensor) -> tuple[int, int]:
        """(correct, counted) of a training batch: images or pixels."""

    @abstractmethod
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
    ) -> object:
        """The exact evaluation over ``loader`` (all-reduced under DDP)."""

    @abstractmethod
    def row(self, train: object, result: object) -> dict:
        """This task's columns of one ``metrics.csv`` row."""

    @abstractmethod
    def log_line(self, row: dict) -> str:
        """The figures of one epoch's row, for the log."""

    #: ``curves.png``: the loss's label, then the right panel's title, its y label and its
    #: series as (column, marker style, label).
    loss_label: str = "cross-entropy"
    curves: tuple[str, str, tuple[tuple[str, str, str], ...]] = ("", "", ())

    def plot(self, path: Path, history: list[dict], title: str) -> None:
        """Loss (train and validation), then the task's figures, against epoch."""
        epochs = [h["epoch"] for h in history]
        fig = new_figure(figsize=(10, 4))
        ax_loss, ax_figures = fig.subplots(1, 2)
        ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
        ax_loss.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation")
        ax_loss.set(xlabel="epoch", ylabel=self.loss_label, title="loss")
        panel, ylabel, series = self.curves
        for key, style, label in series:
            ax_figures.plot(epochs, [h[key] for h in history], style, label=label)
        ax_figures.set(xlabel="epoch", ylabel=ylabel, title=panel)
        for ax in (ax_loss, ax_figures):
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(title)
        fig.tight_layout()
        save_figure(fig, path)

    @abstractmethod
    def summary(self, history: list[dict], result: object | None = None) -> dict:
        """The figures ``summary.json`` reports from the metric history."""

    @abstractmethod
    def scores_text(self, summary: dict) -> str:
        """The summary's figures in words, for the line ``train`` prints."""

    def picture(
        self, path: Path, model: nn.Module, dataset: Dataset, mean_std: tuple, device: torch.device
    ) -> bool:
        """Draw predictions beside the truth at ``path`` when the task has a picture to show;
        ``False`` when it has none."""
        return False
