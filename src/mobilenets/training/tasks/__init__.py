"""What differs by task, in one place per task; the training loop (:mod:`..loop`) is one.

A :class:`Task` builds a run's data (datasets, collate), its loss, what a training step
scores, the evaluation with its all-reduce, the row of ``metrics.csv``, the log line, the
curves and the summary's figures. The model name decides the task (the registry's ``task``).
"""

from __future__ import annotations

from mobilenets.models.registry import model_task
from mobilenets.training.tasks.base import Task
from mobilenets.training.tasks.classification import Classification
from mobilenets.training.tasks.detection import Detection
from mobilenets.training.tasks.segmentation import Segmentation

TASKS: dict[str, Task] = {
    "classification": Classification(),
    "segmentation": Segmentation(),
    "detection": Detection(),
}


def task_for(model: str | None) -> Task:
    """The task of the registered network ``model`` (classification when not yet known)."""
    return TASKS[model_task(model)] if model else TASKS["classification"]


__all__ = ["TASKS", "Classification", "Detection", "Segmentation", "Task", "task_for"]
