"""NNCF's post-training quantization, made for ONNX Runtime's fused int8 kernels.

Measured on the real V2 (``torchvision:mobilenet_v2.IMAGENET1K_V1``), 256 calibration and 260
judged ``photos:large`` crops, ONNX Runtime 1.32 on a 2-core VNNI Xeon
(``benchmarks/nncf_onnx.py``, results/nncf_onnx_vnni.md): ONNX Runtime's own QDQ quantizer
agrees with fp32 on 69.23% of the crops (98.67% where fp32 is confident). NNCF's agrees on
90.77% (100%), but as NNCF writes it the file runs 2.4–2.5× slower than fp32: NNCF quantizes the
inputs of depthwise convolutions per channel, and gives signed int8 activations, and ONNX
Runtime's x86 int8 convolution takes neither, so most layers fall back to float. Two changes
make every convolution a fused ``QLinearConv``:

* one scale per activation tensor (NNCF's ``per_channel=False`` for activations);
* each int8 activation (zero point z) written as uint8 with zero point z + 128: the same real
  values, exactly, in the type ONNX Runtime's kernels read (:func:`unsigned_activations`).

With NNCF's mixed preset (asymmetric activations) and full bias correction the result agrees
on 88.46% (100%) in 3.27 ms, as fast as ONNX Runtime's own int8 (3.27 ms; fp32 5.63; batch 1,
1 thread, interleaved) once the classifier is a ``QGemm`` too (:func:`quantized_classifier`).
The bias correction carries it: NNCF's fast variant gave 82.31%. Where NNCF cannot place its
quantizers so that ONNX Runtime fuses them (V3's hard-swish), ``quantize`` keeps ONNX Runtime's
quantizer by default (:data:`~mobilenets.export.choices.NNCF_UNFUSED_OPS`).

For a CPU without VNNI the overflow fix gives 7-bit weights to every layer that sums over
channels; depthwise convolutions keep 8 bits, which is safe in ONNX Runtime too: its AVX2
depthwise kernel widens inputs and weights to 16 bits before it multiplies (MLAS
``qdwconv_avx2.cpp``), so it has no 16-bit pair sums to saturate.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mobilenets.cpu import Int8Scheme
from mobilenets.errors import MobilenetsError

#: What :func:`nncf_onnx` asks of NNCF, said in the int8 file's record and the report.
NNCF_ONNX = (
    "NNCF post-training quantization (mixed preset, bias correction, per-tensor uint8 activations)"
)


def run_nncf(spec: dict, folder: Path) -> None:
    """NNCF in a child process (:mod:`mobilenets.export.nncf_child`; it hooks torch in the
    process that imports it), its progress on this process's stderr; a failure is one line,
    what NNCF raised (the child writes it to a file in ``folder``)."""
    spec = {**spec, "error": str(folder / "error.txt")}
    (folder / "spec.json").write_text(json.dumps(spec))
    command = [sys.executable, "-m", "mobilenets.export.nncf_child", str(folder / "spec.json")]
    done = subprocess.run(command, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        said = Path(spec["error"]).read_text() if Path(spec["error"]).exists() else ""
        raise MobilenetsError(
            f"NNCF's quantization failed: {said.strip()[:500] or f'exit {done.returncode}'}"
        )


def nncf_onnx(
    model_path: str | Path,
    out_path: str | Path,
    samples: np.ndarray,
    ignored: Sequence[str],
    scheme: Int8Scheme,
) -> None:
    """NNCF's int8 QDQ model of the fp32 ``model_path``, calibrated on ``samples`` (N×C×H×W),
    the nodes ``ignored`` kept fp32, written at ``out_path`` in the form ONNX Runtime fuses
    (:func:`unsigned_activations`). A scheme with 7-bit weights (``reduce_range``: x86 without
    VNNI) gets NNCF's overflow fix in every layer, which is the same 7 bits."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        np.save(folder / "samples.npy", samples)
        spec = {
            "fp32": str(model_path),
            "samples": str(folder / "samples.npy"),
            "out": str(folder / "int8.onnx"),
            "ignored": list(ignored),
            "overflow_fix": "enable" if scheme.reduce_range else "disable",
            "fast_bias_correction": False,
            "preset": "MIXED",
            "per_tensor_activations": True,
        }
        run_nncf(spec, folder)
        model = onnx.load(spec["out"])
    unsigned_activations(model)
    quantized_classifier(model)
    onnx.save(model, str(out_path))


def unsigned_activations(model: object) -> int:
    """Rewrite each int8 activation's quantize/dequantize pair as uint8 with zero point
    z + 128 (the same grid of real values), in place; weights stay int8. Returns how many
    zero points moved."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    constants = set(initializers) | {
        out for node in graph.node if node.op_type == "Constant" for out in node.output
    }
    weight_zeros = {
        node.input[2]
        for node in graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in constants and len(node.input) > 2
    }
    quantized = {
        node.output[0]: node
        for node in graph.node
        if node.op_type == "QuantizeLinear" and node.input[0] not in constants
    }
    pairs = list(quantized.values()) + [
        node
        for node in graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in quantized
    ]
    moved: set[str] = set()
    for node in pairs:
        zero = initializers.get(node.input[2]) if len(node.input) > 2 else None
        if zero is None or zero.data_type != TensorProto.INT8 or zero.name in moved:
            continue
        if zero.name in weight_zeros:  # shared with a weight: that one must stay int8
            raise ValueError(f"zero point {zero.name} is shared by a weight and an activation")
        value = numpy_helper.to_array(zero).astype(np.int16) + 128
        zero.CopyFrom(numpy_helper.from_array(value.astype(np.uint8), zero.name))
        moved.add(zero.name)
    retyped = {out for out, node in quantized.items() if node.input[2] in moved}
    kept = [v for v in graph.value_info if v.name not in retyped]
    del graph.value_info[:]
    graph.value_info.extend(kept)  # the Q outputs' types are inferred again
    return len(moved)


def quantized_classifier(model: object) -> int:
    """Give each Gemm whose weight NNCF quantized what ONNX Runtime's ``QGemm`` fusion needs, in
    place: its input dequantized right before it (NNCF's quantizer sits before the Flatten, so a
    copy of the same scale and zero point goes after it: the same values) and its bias as int32
    at the input scale × the weight's (ONNX Runtime's own convention; a rounding of at most half
    a step of about 1e-5). Left as NNCF writes it, the classifier ran in float and dequantized
    its weights on every call: the real V2 took 15–19% longer than ONNX Runtime's own int8.
    Returns how many Gemms changed."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    constants = {n.output[0]: n.attribute[0].t for n in graph.node if n.op_type == "Constant"}
    value = {**initializers, **constants}  # the tensors a name can hold
    producer = {out: node for node in graph.node for out in node.output}
    changed = 0
    for gemm in [n for n in graph.node if n.op_type == "Gemm" and len(n.input) == 3]:
        reshape, weight = producer.get(gemm.input[0]), producer.get(gemm.input[1])
        if weight is None or weight.op_type != "DequantizeLinear" or reshape is None:
            continue
        source = producer.get(reshape.input[0])
        if reshape.op_type not in ("Flatten", "Reshape") or source is None:
            continue
        if source.op_type != "DequantizeLinear" or gemm.input[2] not in initializers:
            continue
        scale, zero = source.input[1], source.input[2]
        name = gemm.input[0]
        graph.node.extend(
            [
                helper.make_node("QuantizeLinear", [name, scale, zero], [f"{name}_q"]),
                helper.make_node("DequantizeLinear", [f"{name}_q", scale, zero], [f"{name}_dq"]),
            ]
        )
        bias = numpy_helper.to_array(initializers[gemm.input[2]])
        step = numpy_helper.to_array(value[scale]) * numpy_helper.to_array(value[weight.input[1]])
        quantized = np.round(bias / step).astype(np.int32)
        stem = gemm.input[2]
        graph.initializer.extend(
            [
                numpy_helper.from_array(quantized, f"{stem}_int32"),
                numpy_helper.from_array(step.astype(np.float32), f"{stem}_scale"),
                numpy_helper.from_array(np.zeros_like(quantized), f"{stem}_zero"),
            ]
        )
        graph.node.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{stem}_int32", f"{stem}_scale", f"{stem}_zero"],
                [f"{stem}_dq"],
                axis=0,
            )
        )
        gemm.input[0], gemm.input[2] = f"{name}_dq", f"{stem}_dq"
        if not any(stem in node.input for node in graph.node):  # the float bias, now unread
            graph.initializer.remove(initializers[stem])
        changed += 1
    if changed:  # the new nodes were appended: put the graph back in topological order
        _sort_nodes(graph)
    return changed


def _sort_nodes(graph: object) -> None:
    """Order ``graph``'s nodes so that each comes after the nodes whose outputs it reads."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        node = next(n for n in pending if all(i in ready for i in n.input))
        pending.remove(node)
        ordered.append(node)
        ready.update(node.output)
    del graph.node[:]
    graph.node.extend(ordered)
