"""NNCF's post-training quantization of an OpenVINO IR, run in a process of its own.

``nncf.quantize`` imports ``nncf.torch``, which hooks torch's functions for the rest of the
process: afterwards every torch op ran about 3× slower here (a conv + ReLU loop, 0.23 s →
0.78 s), which would slow whatever a user's session or the test suite does next. So
:func:`mobilenets.export.quantize.quantize_openvino` runs NNCF here, in a child process that
imports neither torch nor the rest of mobilenets' training code, and reads the IR it writes.

    python -m mobilenets.export.nncf_child SPEC.json

SPEC: ``fp32`` (the IR), ``samples`` (a ``.npy`` of the calibration batch, N×C×H×W),
``out`` (the int8 IR to write), ``ignored`` (node names kept fp32), ``overflow_fix``
(``enable`` or ``first_layer_only``), ``fast_bias_correction``.
"""

from __future__ import annotations

import json
import sys


def quantize(spec: dict) -> None:
    import nncf
    import numpy as np
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    samples = np.load(spec["samples"], allow_pickle=False)
    core = ov.Core()
    model = core.read_model(spec["fp32"])
    ignored = spec["ignored"]
    quantized = nncf.quantize(
        model,
        nncf.Dataset([samples[i : i + 1] for i in range(len(samples))]),
        subset_size=len(samples),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        fast_bias_correction=bool(spec["fast_bias_correction"]),
        ignored_scope=nncf.IgnoredScope(names=ignored, validate=False) if ignored else None,
        advanced_parameters=AdvancedQuantizationParameters(
            overflow_fix=OverflowFix(spec["overflow_fix"])
        ),
    )
    ov.save_model(quantized, spec["out"], compress_to_fp16=False)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as file:
        quantize(json.load(file))
