"""VOC box folders written for the tests (the project reads VOC XML; nothing in it writes it)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def write_voc(
    folder: Path, name: str, objects: Iterable[tuple[str, Sequence[float]]], pixels: np.ndarray
) -> Path:
    """``folder/images/NAME.png`` (``pixels``: H×W×3 uint8) and ``folder/annotations/NAME.xml``
    holding ``objects``, (class name, (x1, y1, x2, y2) in pixels) pairs; returns the image."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "annotations").mkdir(exist_ok=True)
    image = folder / "images" / f"{name}.png"
    Image.fromarray(pixels).save(image)
    rows = "".join(
        f"<object><name>{c}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for c, b in objects
    )
    (folder / "annotations" / f"{name}.xml").write_text(f"<annotation>{rows}</annotation>")
    return image
