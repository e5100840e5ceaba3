"""Our converted networks against Keras applications' own (Keras 3, torch backend): the table
in issue 15's closing note.

    python benchmarks/keras_parity.py

For every family, α and minimalistic flag of ``tests/weights/test_keras.py`` (the same model
building, BN randomisation and calibration, photographs and preprocessing): the logits' scale,
the largest |ours − Keras|, the same with our default symmetric padding instead, and how far
the two photographs' logits are apart (so a match is not two constants agreeing).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "weights"))

import test_keras as t

from mobilenets.models import create_model
from mobilenets.weights import convert_keras


def main() -> int:
    print(
        "| Keras model | α | minimalistic | max abs logit | max abs (ours − Keras) | "
        "symmetric padding instead | photo 1 vs photo 2 |"
    )
    print("|---|---|---|---|---|---|---|")
    for family, alpha, minimal in t.CASES:
        with tempfile.TemporaryDirectory() as folder:
            keras_model = t.keras_model(family, alpha, minimal, 224, Path(folder))
            path = Path(folder) / "m.weights.h5"
            keras_model.save_weights(path)
            net, info = convert_keras(path)
        pixels = t.images(224)
        expected = t.keras_logits(keras_model, family, pixels)
        symmetric = create_model(info.model, **{**info.kwargs, "padding": "symmetric"})
        symmetric.load_state_dict(net.state_dict())
        ours = np.abs(t.our_logits(net, pixels, info) - expected).max()
        other = np.abs(t.our_logits(symmetric, pixels, info) - expected).max()
        print(
            f"| {family} | {alpha:g} | {'yes' if minimal else 'no'} | "
            f"{np.abs(expected).max():.2f} | {ours:.1e} | {other:.2f} | "
            f"{np.abs(expected[0] - expected[1]).max():.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
