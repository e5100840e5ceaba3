"""Evaluation at scale: a confusion picture that stays bounded for 1,000 classes."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from mobilenets.training.evaluation import CONFUSION_CLASSES, most_confused, plot_confusion


def test_thousand_class_confusion_picture_is_bounded_and_shows_the_most_confused(tmp_path):
    rng = np.random.default_rng(0)
    matrix = np.diag(rng.integers(20, 50, 1000))
    confused = [3, 141, 592, 653, 999]
    for i in confused:  # these classes are mistaken for one another
        matrix[i, (i + 7) % 1000] += 25
    names = [f"class-{i:04d}" for i in range(1000)]
    start = time.perf_counter()
    plot_confusion(tmp_path / "c.png", matrix, names, "top-1 x% on y images")
    seconds = time.perf_counter() - start
    width, height = Image.open(tmp_path / "c.png").size
    assert width <= 2000 and height <= 2000  # 1,000 classes used to ask for ~50,000 px
    chosen = most_confused(matrix)
    assert len(chosen) == CONFUSION_CLASSES and set(confused) <= set(chosen)
    assert seconds < 30
