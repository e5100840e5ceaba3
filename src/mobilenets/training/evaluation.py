"""``evaluate_checkpoint``: top-1/top-5/loss of a trained run on a data spec's held-out split,
optionally with one prediction per image (CSV) and a confusion-matrix plot beside it."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mobilenets.data import build_dataset, check_classes, sample_name
from mobilenets.data.detection import build_detection_dataset
from mobilenets.data.kinds import check_data_task
from mobilenets.data.segmentation import build_segmentation_dataset
from mobilenets.errors import ConfigError, ZeroWorkError, display, printable
from mobilenets.fileio import check_output_path, new_figure, save_figure, write_text_atomic
from mobilenets.training import distributed
from mobilenets.training.engine import EvalResult, evaluate, log_to_stderr, make_loader
from mobilenets.training.tasks import TASKS
from mobilenets.training.tasks.detection import DetectionResult
from mobilenets.training.tasks.segmentation import SegmentationResult
from mobilenets.weights import load


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | None = None,
    *,
    predictions: str | Path | None = None,
    batch_size: int = 128,
    data_root: str | None = None,
    skip_bad_images: bool = False,
    progress: bool = True,
    device: str = "cpu",
    workers: int = 0,
    log: Callable[[str], None] = log_to_stderr,
) -> EvalResult:
    """Evaluate a saved network (a run's ``checkpoint.pt``, a ``.safetensors`` weights file or an
    exported ``.onnx``) on ``data``'s "val" split (default: the data it was trained on), with
    its own preprocessing (``info.eval_transform()``), on ``device`` with ``workers`` loader
    processes. The accuracy is logged before the predictions file and its plot are written."""
    if predictions is not None:  # before any work; the data folder is checked once it is known
        check_output_path(predictions, checkpoint, flag="--predictions")
        check_output_path(Path(predictions).with_suffix(".confusion.png"), checkpoint)
    model, info = load(checkpoint)
    data = data or info.data
    if not data:
        raise ConfigError(f"--data is required to evaluate {display(checkpoint)}")
    check_task(checkpoint, info.model, info.task, data)
    if info.task != "classification":
        if predictions is not None:
            raise ConfigError(
                "--predictions writes a classifier's CSV; use predict for masks and boxes"
            )
        return evaluate_dense(
            model,
            info,
            data,
            batch_size=batch_size,
            progress=progress,
            device=device,
            log=log,
            data_root=data_root,
        )
    if predictions is not None:
        for path in (Path(predictions), Path(predictions).with_suffix(".confusion.png")):
            check_output_path(path, checkpoint, flag="--predictions", data=[data])
    dataset = build_dataset(
        data,
        "val",
        info.input_size,
        root=data_root,
        skip_bad_images=skip_bad_images,
        preprocess=info.eval_transform(),
    )
    classes = list(info.classes)
    check_classes(
        classes,
        [str(c) for c in dataset.classes],
        expected_from=display(checkpoint),
        found_in=f"{display(data)} val/",
    )
    if len(dataset) == 0:
        raise ZeroWorkError(f"{display(data)}: the val split holds no images")
    target = distributed.pick_device(device, distributed.DistEnv())
    if target.type != "cpu" and not any(True for _ in model.parameters()):
        raise ConfigError(f"{display(checkpoint)} runs in ONNX Runtime: use --device cpu")
    loader = make_loader(dataset, batch_size, shuffle=False, workers=workers)
    result = evaluate(
        model.to(target),
        loader,
        device=target,
        keep_predictions=bool(predictions),
        progress=progress,
    )
    log(f"top-1 {result.top1:.2f}%  top-5 {result.top5:.2f}% on {result.images:,} images")
    if predictions:
        write_predictions(Path(predictions), result, dataset, classes)
    return result


def write_predictions(path: Path, result: EvalResult, dataset: object, classes: list[str]) -> None:
    """One row per image (path, label, prediction, confidence) and ``<name>.confusion.png``."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["path", "label", "prediction", "confidence"])
    for index, label, pred, conf in result.predictions:
        row = [sample_name(dataset, index), classes[label], classes[pred]]
        writer.writerow([*map(printable, row), f"{conf:.4f}"])
    write_text_atomic(path, buffer.getvalue())  # file names that are not UTF-8 kept as bytes
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for _, label, pred, _ in result.predictions:
        matrix[label, pred] += 1
    plot_confusion(
        path.with_suffix(".confusion.png"),
        matrix,
        classes,
        f"top-1 {result.top1:.2f}% on {result.images} images",
    )


#: The confusion picture shows every class up to this many; beyond, the most confused ones.
CONFUSION_CLASSES = 30


def most_confused(matrix: np.ndarray, count: int = CONFUSION_CLASSES) -> list[int]:
    """The ``count`` classes with the most errors (as label or as prediction), in class order."""
    errors = matrix.sum(0) + matrix.sum(1) - 2 * np.diag(matrix)
    return sorted(np.argsort(-errors, kind="stable")[:count].tolist())


def plot_confusion(path: Path, matrix: np.ndarray, classes: list[str], title: str) -> None:
    """The confusion matrix as a picture that stays readable and bounded: every class up to
    ``CONFUSION_CLASSES``, else the most confused ones (rows normalised to the share of each
    label, so a class of 1,000 stays legible)."""
    shown = list(range(len(classes)))
    if len(classes) > CONFUSION_CLASSES:
        shown = most_confused(matrix)
        title += f"; the {len(shown)} most confused of {len(classes)} classes"
    sub = matrix[np.ix_(shown, shown)]
    names = [display(classes[i])[:24] for i in shown]
    size = max(4.5, 0.45 * len(shown) + 2)
    fig = new_figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(sub, cmap="Blues")
    ticks = range(len(shown))
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    threshold = sub.max() / 2 if sub.size else 0
    for (i, j), count in np.ndenumerate(sub):
        if count:
            color = "white" if count > threshold else "black"
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color=color)
    ax.set(xlabel="prediction", ylabel="label", title=f"confusion matrix: {title}")
    fig.tight_layout()
    save_figure(fig, path)


def check_task(checkpoint: str | Path, model: str, task: str, data: str) -> None:
    """The network's task is the data's: one line when a classifier meets masks or boxes, or
    the other way round."""
    check_data_task(data, model, task, holder=display(checkpoint))


#: The held-out split of a dense task's data, at the network's input and normalisation.
_VAL_SPLITS: dict[str, Callable] = {
    "segmentation": lambda data, info, root: build_segmentation_dataset(
        data, "val", info.input_size, mean_std=(info.mean, info.std), root=root
    ),
    "detection": lambda data, info, root: build_detection_dataset(
        data, "val", info.input_size, root=root
    ),
}


def evaluate_dense(
    model: object,
    info: object,
    data: str,
    *,
    batch_size: int = 8,
    progress: bool = True,
    device: str = "cpu",
    log: Callable[[str], None] = log_to_stderr,
    data_root: str | None = None,
) -> SegmentationResult | DetectionResult:
    """A segmenter's mIoU, IoU per class and pixel accuracy, or a detector's COCO box AP, on
    ``data``'s val split as it was trained (the task's own evaluation); the figures are
    logged."""
    task = TASKS[info.task]
    dataset = _VAL_SPLITS[info.task](data, info, data_root)
    check_classes(
        list(info.classes),
        [str(c) for c in dataset.classes],
        expected_from=display(info.source),
        found_in=f"{display(data)} val/",
    )
    target = distributed.pick_device(device, distributed.DistEnv())
    loader = make_loader(dataset, batch_size, shuffle=False, collate=task.collate)
    result = task.evaluate(
        model.to(target),
        loader,
        device=target,
        amp=False,
        channels_last=False,
        progress=progress,
        num_classes=info.num_classes,
    )
    result.classes = tuple(info.classes)
    log(result.line())
    return result
