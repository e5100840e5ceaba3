"""NNCF's post-training quantization of an OpenVINO IR or an ONNX model, run in a process of
its own.

``nncf.quantize`` imports ``nncf.torch``, which hooks torch's functions for the rest of the
process: afterwards every torch op ran about 3× slower here (a conv + ReLU loop, 0.23 s →
0.78 s), which would slow whatever a user's session or the test suite does next. So
:mod:`mobilenets.export.quantize` runs NNCF here, in a child process that imports neither torch
(NNCF is kept from it: quantizing the V1 at 32 px on 32 digits took 8.0–9.2 s instead of
11.0–11.6 on the VNNI Xeon) nor the rest of mobilenets' training code, and reads the file it
writes.

    python -m mobilenets.export.nncf_child SPEC.json

SPEC: ``fp32`` (the IR ``.xml`` or the ``.onnx`` model), ``samples`` (a ``.npy`` of the
calibration batch, N×C×H×W), ``out`` (the int8 file to write, of the same kind), ``ignored``
(node names kept fp32), ``overflow_fix`` (``enable``, ``first_layer_only`` or ``disable``),
``fast_bias_correction``, ``preset`` (``PERFORMANCE`` or ``MIXED``) and
``per_tensor_activations`` (one scale per activation tensor: ONNX Runtime's fused int8 kernels
take no other); ``error``, optional: where a failure is written, as one line.
"""

from __future__ import annotations

import json
import sys


def quantize(spec: dict) -> None:
    import nncf
    import numpy as np
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
        QuantizationParameters,
    )

    samples = np.load(spec["samples"], allow_pickle=False)
    onnx_model = spec["fp32"].endswith(".onnx")
    if onnx_model:
        import onnx

        model = onnx.load(spec["fp32"])
        name = model.graph.input[0].name
        items = [{name: samples[i : i + 1]} for i in range(len(samples))]
    else:
        import openvino as ov

        model = ov.Core().read_model(spec["fp32"])
        items = [samples[i : i + 1] for i in range(len(samples))]
    ignored = spec["ignored"]
    per_tensor = spec.get("per_tensor_activations", False)
    quantized = nncf.quantize(
        model,
        nncf.Dataset(items),
        subset_size=len(samples),
        preset=getattr(nncf.QuantizationPreset, spec.get("preset", "PERFORMANCE")),
        fast_bias_correction=bool(spec["fast_bias_correction"]),
        ignored_scope=nncf.IgnoredScope(names=ignored, validate=False) if ignored else None,
        advanced_parameters=AdvancedQuantizationParameters(
            overflow_fix=OverflowFix(spec["overflow_fix"]),
            activations_quantization_params=(
                QuantizationParameters(per_channel=False) if per_tensor else None
            ),
        ),
    )
    if onnx_model:
        onnx.save(quantized, spec["out"])
    else:
        ov.save_model(quantized, spec["out"], compress_to_fp16=False)


if __name__ == "__main__":
    # NNCF imports torch for its torch backend when it can (1.6 of its 2.3 s import here); an
    # ONNX or OpenVINO model needs none of it, and without torch NNCF cannot hook it either
    sys.modules["torch"] = None  # type: ignore[assignment]
    with open(sys.argv[1], encoding="utf-8") as file:
        spec = json.load(file)
    try:
        quantize(spec)
    except Exception as error:  # one line, for the parent to say
        said = " ".join(f"{type(error).__name__}: {error}".split())
        if spec.get("error"):
            with open(spec["error"], "w", encoding="utf-8") as file:
                file.write(said)
        else:
            print(said, file=sys.stderr)
        sys.exit(1)
