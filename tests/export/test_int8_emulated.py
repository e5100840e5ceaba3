"""int8 on an AVX2-only CPU, checked on any x86 machine: the digits V1's int8 files run by ONNX
Runtime under QEMU's user-mode emulator as a Zen 3 (AVX2 and FMA, no AVX-512, no VNNI), whose
MLAS takes the AVX2 kernels, ``vpmaddubsw``'s 16-bit saturation included (issue 30;
``benchmarks/int8_emulated.py`` does the same for the real V2, ExecuTorch and a segmenter).

QEMU 7.2 or later (its TCG emulates AVX2): ``.ci/run`` unpacks Debian's ``qemu-user-static``
into ``.qemu/``; ``MOBILENETS_QEMU`` or a ``qemu-x86_64-static`` on the PATH serve too. Where
there is none the test is skipped, saying how to get it."""

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mobilenets.cpu import int8_cpu, this_cpu

pytest.importorskip("onnxruntime")

ZEN3 = "EPYC-Milan"
#: Run in the emulated (and, for comparison, the native) process: onnxruntime and numpy only.
RUN = """
import sys, numpy as np, onnxruntime as ort
x = np.load(sys.argv[1])
for model, out in zip(sys.argv[2::2], sys.argv[3::2]):
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    np.save(out, session.run(None, {session.get_inputs()[0].name: x})[0])
"""


def qemu() -> str | None:
    """QEMU's x86_64 user-mode emulator, where one is found."""
    found = [os.environ.get("MOBILENETS_QEMU", "")]
    found.append(str(Path(__file__).parents[2] / ".qemu" / "usr" / "bin" / "qemu-x86_64-static"))
    found += [shutil.which("qemu-x86_64-static") or "", shutil.which("qemu-x86_64") or ""]
    return next((path for path in found if path and os.access(path, os.X_OK)), None)


def predictions(models: list[Path], inputs: Path, emulator: list[str]) -> list[np.ndarray]:
    """Each model's top-1 on the images at ``inputs``, run by ONNX Runtime under ``emulator``
    (``[]``: on this CPU)."""
    outs = [model.with_suffix(f".{len(emulator)}.npy") for model in models]
    pairs = [str(p) for pair in zip(models, outs, strict=True) for p in pair]
    command = [*emulator, sys.executable, "-c", RUN, str(inputs), *pairs]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    said = [line for line in done.stderr.splitlines() if "qemu" not in line]  # TCG's warnings
    assert done.returncode == 0, said[-5:]
    return [np.load(out).argmax(1) for out in outs]


@pytest.mark.skipif(platform.machine() != "x86_64", reason="emulates an x86 CPU")
def test_the_avx2_scheme_computes_the_same_on_an_avx2_cpu_and_8_bits_saturate_there(
    int8_onnx, tmp_path
) -> None:
    """Measured on the VNNI Xeon (360 held-out digits, the suite's V1): the avx2 scheme's file
    (7-bit weights where a kernel sums pairs of products) agrees with fp32 on 98.06%, to the
    image the same emulated; the vnni scheme's (8-bit) 98.06% here and 93.89% emulated, where
    it saturates. With torch held to AVX2 (another V1): 98.33% both, and 98.61% against
    93.89%. On an AVX2-only host both columns are the AVX2 ones."""
    emulator = qemu()
    if emulator is None:
        pytest.skip(
            "no QEMU (≥ 7.2): apt-get download qemu-user-static && dpkg -x qemu-user-static_*.deb "
            ".qemu, or MOBILENETS_QEMU=PATH"
        )
    import torch

    from mobilenets.export.quantize import _batches, _datasets, quantize_onnx
    from mobilenets.weights import load

    fp32, _, made_here = int8_onnx["mobilenet_v1"]  # this machine's scheme
    here = int8_cpu()
    other = "avx2" if here == "vnni" else "vnni"
    report = quantize_onnx(fp32, tmp_path / f"{other}.onnx", "digits", target_cpu=other)
    files = {here: Path(made_here.path), other: Path(report.path)}
    _, val, _ = _datasets(fp32, load(fp32)[1], "digits", None)  # the images quantize judges on
    inputs = tmp_path / "val.npy"
    np.save(inputs, torch.cat(_batches(val)[0]).numpy())
    models = [fp32, files["avx2"], files["vnni"]]
    reference, avx2_here, vnni_here = predictions(models, inputs, [])
    avx2_there, vnni_there = predictions(models[1:], inputs, [emulator, "-cpu", ZEN3])
    assert len(reference) == 360
    assert np.array_equal(avx2_there, avx2_here)  # exact integer arithmetic on both kinds
    assert (avx2_there == reference).mean() >= 0.97
    if this_cpu() == "vnni":  # ONNX Runtime's 32-bit sums here, 16-bit saturating ones there
        assert (vnni_there == reference).mean() <= (vnni_here == reference).mean() - 0.01
    else:
        assert np.array_equal(vnni_there, vnni_here)
