"""Detection: the detector computes its own losses (torchvision's API: ``model(images,
targets)`` in training), and the evaluation is COCO box AP with pycocotools over every held-out
image once: under DDP each process detects its shard and the detections are gathered before
they are scored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.utils import draw_bounding_boxes

from mobilenets.data.detection import build_detection_dataset, coco_metrics
from mobilenets.fileio import new_figure, save_figure
from mobilenets.models.detection.ssd import SSD_MEAN, SSD_STD
from mobilenets.training.engine import autocast, batches
from mobilenets.training.tasks.base import Task

#: The lowest score `predict` lists and draws by default.
DRAW_SCORE = 0.3


class BoxTargets(list):
    """A batch's targets, one ``{"boxes", "labels"}`` dict per image, that move to a device as
    a tensor does (what the training loop asks of its targets)."""

    def to(self, device: torch.device, non_blocking: bool = False) -> BoxTargets:
        return BoxTargets(
            {k: v.to(device, non_blocking=non_blocking) for k, v in target.items()}
            for target in self
        )


def collate_boxes(samples: list) -> tuple[torch.Tensor, BoxTargets, torch.Tensor, int]:
    """Stack the (equal-size) images; keep each image's boxes; drop unreadable samples."""
    good = [s for s in samples if s is not None]
    skipped = len(samples) - len(good)
    if not good:
        return torch.empty(0), BoxTargets(), torch.empty(0, dtype=torch.long), skipped
    images = torch.stack([s[0] for s in good])
    indices = torch.tensor([s[2] for s in good], dtype=torch.long)
    return images, BoxTargets(s[1] for s in good), indices, skipped


def detection_loss(losses: dict[str, torch.Tensor], targets: object) -> torch.Tensor:
    """The detector's own losses summed (box regression + classification)."""
    return sum(losses.values())


def _gather(items: list) -> list:
    """Every process's items, on every process (one process: the items)."""
    if not (dist.is_available() and dist.is_initialized()):
        return items
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


@dataclass
class DetectionResult:
    """COCO box AP (%) over the held-out images, and the mean validation loss."""

    loss: float
    map: float
    ap50: float
    ap75: float
    images: int
    skipped: int = 0
    boxes: int = 0  # true boxes scored
    classes: tuple[str, ...] = ()

    def line(self) -> str:
        return (
            f"mAP {self.map:.2f}%  AP50 {self.ap50:.2f}%  AP75 {self.ap75:.2f}% on "
            f"{self.images:,} images ({self.boxes:,} boxes)"
        )

    def to_dict(self) -> dict:
        return {
            "loss": self.loss,
            "map": self.map,
            "ap50": self.ap50,
            "ap75": self.ap75,
            "images": self.images,
            "boxes": self.boxes,
            "skipped": self.skipped,
        }


@torch.no_grad()
def evaluate_detection(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    *,
    device: torch.device,
    amp: bool = False,
    progress: bool = True,
) -> DetectionResult:
    """Detections and the loss of every image of ``loader`` (one pass each), scored by
    pycocotools once every process's detections are gathered (each image exactly once)."""
    detector = getattr(model, "module", model)  # DDP's wrapped module
    detector.eval()
    rows, loss_sum, skipped = [], 0.0, 0
    for x, y, idx, n_skipped in batches(loader, "eval", progress):
        skipped += n_skipped
        if len(y) == 0:
            continue
        targets = y.to(device)
        with autocast(device, amp):
            if hasattr(detector, "losses_and_detections"):
                losses, detections = detector.losses_and_detections(list(x.to(device)), targets)
            else:  # an exported detector: the detections alone
                losses, detections = {"none": torch.tensor(float("nan"))}, detector(list(x))
        loss_sum += float(sum(losses.values())) * len(y)
        for i, truth, found in zip(idx.tolist(), targets, detections, strict=True):
            rows.append(
                (
                    i,
                    {k: v.cpu() for k, v in truth.items()},
                    {
                        k: v.float().cpu() if v.is_floating_point() else v.cpu()
                        for k, v in found.items()
                    },
                )
            )
    rows = sorted(_gather(rows), key=lambda row: row[0])
    loss_sum, skipped = (sum(_gather([v])) for v in (loss_sum, skipped))
    truths, found = [r[1] for r in rows], [r[2] for r in rows]
    metrics = coco_metrics(found, truths, num_classes)
    boxes = sum(len(t["boxes"]) for t in truths)
    return DetectionResult(
        loss_sum / max(len(rows), 1),
        **metrics,
        images=len(rows),
        skipped=int(skipped),
        boxes=boxes,
    )


class Detection(Task):
    name = "detection"
    metric_fields = ("train_loss", "val_loss", "val_map", "val_ap50", "val_ap75")
    headline = "val_map"
    loss_label = "box regression + classification"
    curves = (
        "COCO box AP",
        "%",
        (
            ("val_ap50", "o-", "AP50"),
            ("val_ap75", "^--", "AP75"),
            ("val_map", "s-", "mAP (0.50:0.95)"),
        ),
    )

    def collate(self, samples: list) -> tuple[torch.Tensor, BoxTargets, torch.Tensor, int]:
        return collate_boxes(samples)

    def data_mean_std(self, data: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return SSD_MEAN, SSD_STD

    def keeps_own_normalization(self, data: str) -> bool:
        return True  # the detector normalises inside (torchvision's GeneralizedRCNNTransform)

    def model_kwargs(self, config: object) -> dict:
        return {"image_size": config.resolution}

    def datasets(
        self, config: object, mean_std: tuple, eval_preprocess: Callable | None
    ) -> tuple[Dataset, Dataset]:
        common = {"root": config.data_root}
        train = build_detection_dataset(
            config.data, "train", config.resolution, augment=config.augment, **common
        )
        val = build_detection_dataset(config.data, "val", config.resolution, **common)
        return train, val

    def forward(self, model: nn.Module, x: torch.Tensor, y: BoxTargets) -> object:
        return model(list(x), list(y))  # training: the losses

    def criterion(self, config: object) -> Callable:
        return detection_loss

    def score(self, outputs: object, targets: object) -> tuple[int, int]:
        return 0, 0  # a detector's training batches have no accuracy of their own

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
    ) -> DetectionResult:
        return evaluate_detection(
            model, loader, num_classes, device=device, amp=amp, progress=progress
        )

    def row(self, train: object, result: DetectionResult) -> dict:
        return {
            "train_loss": train.loss,
            "val_loss": result.loss,
            "val_map": result.map,
            "val_ap50": result.ap50,
            "val_ap75": result.ap75,
        }

    def log_line(self, row: dict) -> str:
        return (
            f"loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
            f"val mAP {row['val_map']:.2f}%  AP50 {row['val_ap50']:.2f}%  "
            f"AP75 {row['val_ap75']:.2f}%"
        )

    def summary(self, history: list[dict], result: object | None = None) -> dict:
        last = history[-1]
        return {
            "val_map": last["val_map"],
            "val_ap50": last["val_ap50"],
            "val_ap75": last["val_ap75"],
            "val_loss": last["val_loss"],
            "best_val_ap50": max(h["val_ap50"] for h in history),
        }

    def scores_text(self, summary: dict) -> str:
        return (
            f"mAP {summary['val_map']:.2f}%, AP50 {summary['val_ap50']:.2f}%, "
            f"AP75 {summary['val_ap75']:.2f}%"
        )

    def picture(
        self, path: Path, model: nn.Module, dataset: Dataset, mean_std: tuple, device: torch.device
    ) -> bool:
        """Up to 4 held-out images: the true boxes (green) beside as many of the best
        detections (red, with their scores), drawn with ``draw_bounding_boxes``."""
        samples = [dataset[i] for i in range(min(4, len(dataset)))]
        detector = getattr(model, "module", model).eval()
        fig = new_figure(figsize=(8, 4 * len(samples)))
        axes = fig.subplots(len(samples), 2, squeeze=False)
        for (image, truth), row in zip(samples, axes, strict=True):
            with torch.no_grad():
                found = detector([image.to(device)])[0]
            best = slice(0, max(1, len(truth["boxes"])))  # detections come sorted by score
            shown = (image.clamp(0, 1) * 255).to(torch.uint8)
            scores = found["scores"][best].tolist()
            panels = (
                (f"truth: {len(truth['boxes'])} boxes", truth["boxes"], "#3cb44b", None),
                (
                    f"the best {len(scores)} detections (scores {min(scores, default=0):.2f}–"
                    f"{max(scores, default=0):.2f})",
                    found["boxes"][best].cpu(),
                    "#e6194b",
                    [f"{v:.2f}" for v in scores],
                ),
            )
            for ax, (title, boxes, color, labels) in zip(row, panels, strict=True):
                drawn = draw_bounding_boxes(shown, boxes, labels=labels, colors=color, width=2)
                ax.imshow(drawn.permute(1, 2, 0).numpy())
                ax.set(title=title, xticks=[], yticks=[])
        fig.tight_layout()
        save_figure(fig, path)
        return True


@dataclass
class BoxPrediction:
    """One image's detections (``boxes`` as [x1, y1, x2, y2] pixels, with class names and
    scores), the files written for it, or ``error`` for an unreadable image skipped."""

    path: str
    boxes: list = field(default_factory=list)
    json: str = ""
    picture: str = ""
    error: str = ""


@torch.no_grad()
def predict_boxes(
    network: tuple[nn.Module, object],
    images: list[str | Path],
    out: str | Path,
    *,
    min_score: float = DRAW_SCORE,
    skip_bad_images: bool = False,
) -> list[BoxPrediction]:
    """Detect objects in whole images (the detector resizes them to its input and maps the
    boxes back): ``out/NAME.boxes.json`` lists the detections scoring at least ``min_score``,
    ``out/NAME.boxes.png`` draws them (``draw_bounding_boxes``). Nothing is written over an
    input or inside a data folder."""
    import json

    import numpy as np

    from mobilenets.data.folder import BadImageError, load_rgb
    from mobilenets.fileio import check_output_path, check_writable_folder, write_bytes_atomic
    from mobilenets.training.tasks.segmentation import png_bytes

    model, info = network
    out = check_writable_folder(out)
    classes = list(info.classes) or [str(i) for i in range(info.num_classes)]
    detector = getattr(model, "module", model).eval()
    results = []
    for path in map(str, images):
        try:
            pixels = np.asarray(load_rgb(path))
        except BadImageError as err:
            if not skip_bad_images:
                raise
            results.append(BoxPrediction(path, error=str(err)))
            continue
        stem = Path(path).stem
        json_path, picture_path = out / f"{stem}.boxes.json", out / f"{stem}.boxes.png"
        for target in (json_path, picture_path):
            check_output_path(target, *images, flag="--out")
        image = torch.from_numpy(np.array(pixels, copy=True)).permute(2, 0, 1)
        found = detector([image.float() / 255])[0]
        keep = found["scores"] >= min_score
        boxes = [
            {"box": [round(v, 2) for v in box], "label": classes[label], "score": round(score, 4)}
            for box, label, score in zip(
                found["boxes"][keep].tolist(),
                found["labels"][keep].tolist(),
                found["scores"][keep].tolist(),
                strict=True,
            )
        ]
        write_bytes_atomic(json_path, json.dumps(boxes, indent=2).encode())
        names = [f"{b['label']} {b['score']:.2f}" for b in boxes]
        drawn = draw_bounding_boxes(
            image, found["boxes"][keep], labels=names, colors="#e6194b", width=2
        )
        write_bytes_atomic(picture_path, png_bytes(drawn.permute(1, 2, 0).numpy()))
        results.append(BoxPrediction(path, boxes, str(json_path), str(picture_path)))
    return results
