"""Segmentation: per-pixel cross-entropy with the ignore index (plus 0.5 × the auxiliary head's,
as torchvision's reference), and the confusion matrix behind mIoU, per-class IoU and pixel
accuracy, all-reduced under DDP (exact: integer counts).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.utils import draw_segmentation_masks

from mobilenets.data.folder import BadImageError, load_rgb
from mobilenets.data.segmentation import (
    IGNORE_INDEX,
    build_segmentation_dataset,
    collate_padded,
    confusion_counts,
    iou_per_class,
    joint_eval_transform,
    mean_iou,
    nuclei_mean_std,
)
from mobilenets.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mobilenets.fileio import (
    check_output_path,
    check_writable_folder,
    new_figure,
    save_figure,
    write_bytes_atomic,
)
from mobilenets.training.engine import _to, autocast, batches
from mobilenets.training.tasks.base import Task

AUX_WEIGHT = 0.5  # torchvision's references/segmentation


def segmentation_loss(outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``out`` (+ 0.5 × ``aux``), pixels marked 255 ignored."""
    loss = F.cross_entropy(outputs["out"], targets, ignore_index=IGNORE_INDEX)
    if "aux" in outputs:
        loss = loss + AUX_WEIGHT * F.cross_entropy(
            outputs["aux"], targets, ignore_index=IGNORE_INDEX
        )
    return loss


def confusion_matrix(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[true, predicted]`` pixel counts (int64) of logits' argmax, 255 left out."""
    return confusion_counts(logits.argmax(1), targets, num_classes)


@dataclass
class SegmentationResult:
    """Evaluation of a segmenter: loss, IoU per class and their mean, pixel accuracy (%).

    A class absent from both the truth and the predictions has no IoU (``nan``) and is left
    out of the mean, as torchmetrics' ``JaccardIndex`` and torchvision's reference do for
    absent classes.
    """

    loss: float
    confusion: torch.Tensor = field(repr=False)
    images: int
    skipped: int = 0
    classes: tuple[str, ...] = ()

    @property
    def iou(self) -> list[float]:
        return iou_per_class(self.confusion)

    @property
    def miou(self) -> float:
        return mean_iou(self.confusion)

    @property
    def pixel_acc(self) -> float:
        total = int(self.confusion.sum())
        return 100 * int(self.confusion.diag().sum()) / total if total else 0.0

    @property
    def pixels(self) -> int:
        return int(self.confusion.sum())

    def line(self) -> str:
        return (
            f"mIoU {self.miou:.2f}%  pixel accuracy {self.pixel_acc:.2f}% on {self.images:,} "
            f"images ({self.pixels:,} labelled pixels)"
        )

    def to_dict(self, classes: list[str] | tuple[str, ...] = ()) -> dict:
        names = list(classes or self.classes) or [str(i) for i in range(len(self.iou))]
        return {
            "loss": self.loss,
            "miou": self.miou,
            "pixel_acc": self.pixel_acc,
            "iou": dict(zip(names, self.iou, strict=True)),
            "images": self.images,
            "pixels": self.pixels,
            "skipped": self.skipped,
        }


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    *,
    device: torch.device,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = True,
) -> SegmentationResult:
    """The confusion matrix and mean loss over every labelled pixel of ``loader``; under DDP
    each process counts its shard and the counts are all-reduced."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    images = skipped = 0
    for x, y, _, n_skipped in batches(loader, "eval", progress):
        skipped += n_skipped
        if len(y) == 0:
            continue
        x, y = _to(x, device, channels_last), y.to(device)
        with autocast(device, amp):
            logits = model(x)["out"]
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX, reduction="sum").double()
        confusion += confusion_matrix(logits, y, num_classes).double()
        images += len(y)
    counts = torch.tensor([images, skipped], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        for tensor in (confusion, loss_sum, counts):
            dist.all_reduce(tensor)
    pixels = max(float(confusion.sum()), 1.0)
    return SegmentationResult(
        float(loss_sum) / pixels, confusion.cpu().long(), int(counts[0]), int(counts[1])
    )


class Segmentation(Task):
    name = "segmentation"
    metric_fields = ("train_loss", "train_pixel_acc", "val_loss", "val_miou", "val_pixel_acc")
    headline = "val_miou"
    loss_label = "cross-entropy per pixel"
    curves = (
        "mIoU and pixel accuracy",
        "%",
        (
            ("train_pixel_acc", "o-", "train pixel acc"),
            ("val_pixel_acc", "^--", "val pixel acc"),
            ("val_miou", "s-", "val mIoU"),
        ),
    )

    def collate(self, samples: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        return collate_padded(samples)

    def data_mean_std(self, data: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return nuclei_mean_std() if data == "nuclei" else (IMAGENET_MEAN, IMAGENET_STD)

    def keeps_own_normalization(self, data: str) -> bool:
        return False

    def datasets(
        self, config: object, mean_std: tuple, eval_preprocess: Callable | None
    ) -> tuple[Dataset, Dataset]:
        common = {"mean_std": mean_std, "root": config.data_root}
        train = build_segmentation_dataset(
            config.data, "train", config.resolution, augment=config.augment, **common
        )
        val = build_segmentation_dataset(config.data, "val", config.resolution, **common)
        return train, val

    def criterion(self, config: object) -> Callable:
        return segmentation_loss

    def score(self, outputs: dict, targets: torch.Tensor) -> tuple[int, int]:
        valid = targets != IGNORE_INDEX
        correct = (outputs["out"].argmax(1) == targets) & valid
        return int(correct.sum()), int(valid.sum())

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
    ) -> SegmentationResult:
        return evaluate_segmentation(
            model,
            loader,
            num_classes,
            device=device,
            amp=amp,
            channels_last=channels_last,
            progress=progress,
        )

    def row(self, train: object, result: SegmentationResult) -> dict:
        return {
            "train_loss": train.loss,
            "train_pixel_acc": train.top1,
            "val_loss": result.loss,
            "val_miou": result.miou,
            "val_pixel_acc": result.pixel_acc,
            "val_iou": result.iou,
        }

    def log_line(self, row: dict) -> str:
        return (
            f"loss {row['train_loss']:.4f}  train pixel acc {row['train_pixel_acc']:.2f}%  "
            f"val mIoU {row['val_miou']:.2f}%  pixel acc {row['val_pixel_acc']:.2f}%"
        )

    def summary(self, history: list[dict], result: object | None = None) -> dict:
        last = history[-1]
        return {
            "val_miou": last["val_miou"],
            "val_pixel_acc": last["val_pixel_acc"],
            "val_iou": last["val_iou"],
            "val_loss": last["val_loss"],
            "best_val_miou": max(h["val_miou"] for h in history),
        }

    def scores_text(self, summary: dict) -> str:
        ious = ", ".join(
            f"{c} {v:.2f}%" for c, v in zip(summary["classes"], summary["val_iou"], strict=True)
        )
        return (
            f"mIoU {summary['val_miou']:.2f}% (IoU {ious}), "
            f"pixel acc {summary['val_pixel_acc']:.2f}%"
        )

    def picture(
        self, path: Path, model: nn.Module, dataset: Dataset, mean_std: tuple, device: torch.device
    ) -> bool:
        """Up to 4 held-out images: the image, the truth and the prediction drawn on it
        (``draw_segmentation_masks``), one row each."""
        rows = [dataset[i] for i in range(min(4, len(dataset)))]
        model.eval()
        fig = new_figure(figsize=(9, 3 * len(rows)))
        axes = fig.subplots(len(rows), 3, squeeze=False)
        mean = torch.tensor(mean_std[0])[:, None, None]
        std = torch.tensor(mean_std[1])[:, None, None]
        for (image, mask), row in zip(rows, axes, strict=True):
            with torch.no_grad():
                predicted = model(image[None].to(device))["out"][0].argmax(0).cpu()
            shown = ((image * std + mean).clamp(0, 1) * 255).to(torch.uint8)
            for ax, (title, labels) in zip(
                row, (("image", None), ("truth", mask), ("prediction", predicted)), strict=True
            ):
                drawn = shown if labels is None else overlay(shown, labels, len(dataset.classes))
                ax.imshow(drawn.permute(1, 2, 0).numpy())
                ax.set(title=title, xticks=[], yticks=[])
        fig.tight_layout()
        save_figure(fig, path)
        return True


def overlay(image: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Every class but the first (background) drawn on a uint8 image at 50% opacity."""
    masks = torch.stack([labels == c for c in range(1, num_classes)])
    colors = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0"]
    palette = [colors[i % len(colors)] for i in range(num_classes - 1)]
    return draw_segmentation_masks(image, masks, alpha=0.5, colors=palette)


def png_bytes(pixels: np.ndarray) -> bytes:
    """A PNG of an H×W (one channel) or H×W×3 uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class MaskPrediction:
    """One image segmented: its mask and overlay files, and the share of its pixels each class
    got (``error`` instead, for an unreadable image skipped)."""

    path: str
    mask: str = ""
    overlay: str = ""
    shares: dict[str, float] = field(default_factory=dict)
    error: str = ""


@torch.no_grad()
def predict_masks(
    network: tuple[nn.Module, object],
    images: list[str | Path],
    out: str | Path,
    *,
    skip_bad_images: bool = False,
) -> list[MaskPrediction]:
    """Segment whole images with the network's normalisation (no resizing): ``out/NAME.mask.png``
    holds each pixel's class index, ``out/NAME.overlay.png`` the classes drawn on the image
    (``draw_segmentation_masks``). Nothing is written over an input or inside a data folder."""
    model, info = network
    out = check_writable_folder(out)
    normalize = joint_eval_transform(info.mean, info.std)
    classes = list(info.classes) or [str(i) for i in range(info.num_classes)]
    results = []
    for path in map(str, images):
        try:
            pixels = np.asarray(load_rgb(path))
        except BadImageError as err:
            if not skip_bad_images:
                raise
            results.append(MaskPrediction(path, error=str(err)))
            continue
        image = tv_tensors.Image(torch.from_numpy(pixels.copy()).permute(2, 0, 1))
        stem = Path(path).stem
        mask_path, overlay_path = out / f"{stem}.mask.png", out / f"{stem}.overlay.png"
        for target in (mask_path, overlay_path):
            check_output_path(target, *images, flag="--out")
        labels = model(normalize(image)[None])["out"][0].argmax(0)
        counts = torch.bincount(labels.flatten(), minlength=len(classes)).tolist()
        shares = {c: n / labels.numel() for c, n in zip(classes, counts, strict=False)}
        write_bytes_atomic(mask_path, png_bytes(labels.to(torch.uint8).numpy()))
        drawn = overlay(image.as_subclass(torch.Tensor), labels, len(classes))
        write_bytes_atomic(overlay_path, png_bytes(drawn.permute(1, 2, 0).numpy()))
        results.append(MaskPrediction(path, str(mask_path), str(overlay_path), shares))
    return results
