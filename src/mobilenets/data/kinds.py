"""Which task a data spec is labelled for, and the one line when a network of another task
meets it."""

from __future__ import annotations

from mobilenets.data.detection import is_detection_data
from mobilenets.data.segmentation import is_segmentation_data
from mobilenets.errors import ConfigError, display


def data_task(data: str) -> str:
    """The task ``data`` is labelled for: ``segmentation`` (masks), ``detection`` (boxes) or
    ``classification`` (a label per image)."""
    if is_detection_data(data):  # before masks: a box folder has classes.txt too
        return "detection"
    return "segmentation" if is_segmentation_data(data) else "classification"


#: The networks to give each task's data, for the messages that refuse the others.
TASK_NETWORKS = {
    "segmentation": "a segmentation model (lraspp_*, deeplabv3_*)",
    "detection": "a detector (ssdlite_*, ssd300_*)",
    "classification": "a classifier (mobilenet_*)",
}


def check_data_task(data: str, model: str, task: str, holder: str = "") -> None:
    """One line when a network of one task meets another task's data (``holder``: the file
    that holds the network, for the message)."""
    found = data_task(data)
    if found != task:
        what = f"{holder} holds {model}" if holder else model
        raise ConfigError(
            f"{what}, a {task} network, but {display(data)} is {found} data: give it "
            f"{TASK_NETWORKS[found]}"
        )
