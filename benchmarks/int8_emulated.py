"""int8 on an AVX2-only CPU, emulated: each int8 file's agreement with fp32 when its kernels run
without VNNI, beside the same file on this CPU (issue 30).

    python benchmarks/int8_emulated.py [--qemu PATH/qemu-x86_64-static] [--cpu EPYC-Milan]

QEMU's user-mode emulator runs the int8 files' runtimes as a Zen 3 (``-cpu EPYC-Milan``: AVX2
and FMA, no AVX-512, no VNNI). QEMU 7.2 or later is needed: its TCG emulates AVX2 and FMA since
7.2, never AVX-512. ONNX Runtime's MLAS and XNNPACK choose their kernels from CPUID, so they
take the AVX2 kernels an AVX2 machine takes, ``vpmaddubsw``'s 16-bit saturation included, and
``mobilenets.cpu.this_cpu`` says ``avx2`` there too. Integer arithmetic is exact, so the
agreement is what an AVX2 CPU computes; latency under emulation (about 150× slower) means
nothing, and none is given. To get QEMU without root or a package manager's install (Debian),
as ``.ci/run`` does: ``apt-get download qemu-user-static && dpkg -x qemu-user-static_*.deb
.qemu``.

Every file is made here, by ``mobilenets quantize``'s own functions, as a user on each kind of
CPU would get it (``--target-cpu vnni`` and ``avx2``):

* the real V2 (torchvision's IMAGENET1K_V1) calibrated on 256 ``photos:large`` train crops and
  judged on the 260 val crops, as ``test_int8_of_the_real_v2_agrees_with_fp32_on_real_photos``
  does: NNCF (the default) and ONNX Runtime's own percentile quantizer, each with either
  scheme, uint8 weights (the remedy ONNX Runtime's docs name), and ExecuTorch's ``.pte``;
* V1 and V2 (α = 0.5) trained 10 epochs on digits at 32 px, as the test suite's ``trained``
  fixture does, judged on digits' 360 held-out images, as the digits int8 tests do;
* LR-ASPP on V3-Small trained on the nuclei as the ``nuclei_run`` fixture does, judged per
  pixel on the held-out tiles, as ``test_int8_of_a_segmenter_is_judged_by_miou_per_pixel`` does.

fp32 runs here once per network; each int8 file runs here and under the emulator (a child
process of this script, ``--worker``, which loads the file with ``mobilenets.weights.load``).
Writes ``int8_emulated_avx2.md`` and ``.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

WEIGHTS = "torchvision:mobilenet_v2.IMAGENET1K_V1"


def _probabilities(path: Path, inputs: np.ndarray, batch: int = 20) -> np.ndarray:
    """Class probabilities of the file at ``path`` (any format ``load`` reads) on ``inputs``,
    a row per image or pixel, as ``quantize``'s guard computes them."""
    import torch

    from mobilenets.export.quantize import _probabilities as probabilities
    from mobilenets.weights import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a file made for the other kind of CPU, on purpose
        network = load(path)[0].eval()
    return probabilities(network, list(torch.from_numpy(inputs).split(batch)))


def _worker(path: str, inputs: str, out: str) -> int:
    """The child: ``path``'s probabilities on the array at ``inputs``, saved at ``out``, with the
    CPU kind it saw (the parent checks the emulator took)."""
    from mobilenets.cpu import this_cpu

    probabilities = _probabilities(Path(path), np.load(inputs))
    np.savez(out, probabilities=probabilities, kind=this_cpu())
    return 0


def _emulated(qemu: str, cpu: str, path: Path, inputs: Path) -> np.ndarray:
    """``path``'s probabilities computed under ``qemu -cpu cpu``."""
    digest = hashlib.sha256(path.read_bytes() + inputs.read_bytes()).hexdigest()[:16]
    out = path.with_suffix(path.suffix + f".{cpu}.{digest}.npz")  # a rerun reuses what it can
    if not out.exists():
        command = [qemu, "-cpu", cpu, sys.executable, __file__, "--worker", str(path)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run([*command, str(inputs), str(out)], env=env, capture_output=True)
        if done.returncode:  # QEMU's warnings about features TCG lacks are left out
            said = [line for line in done.stderr.decode().splitlines() if "qemu" not in line]
            raise SystemExit(f"the emulated run of {path} failed: " + " | ".join(said[-5:]))
    result = np.load(out)
    if str(result["kind"]) != "avx2":
        raise SystemExit(f"under {qemu} -cpu {cpu} the CPU was {result['kind']}, not avx2")
    return result["probabilities"]


def _held_out(model_path: Path, calib_data: str) -> np.ndarray:
    """The held-out images quantize judges on, preprocessed, as one array."""
    import torch

    from mobilenets.export.quantize import _batches, _datasets
    from mobilenets.weights import load

    _, info = load(model_path)
    _, val, _ = _datasets(model_path, info, calib_data, None)
    batches, _ = _batches(val)
    return torch.cat(batches).numpy()


def _made(out: Path, quantize: Callable, *args: object, **kwargs: object) -> Path:
    """The int8 file at ``out``, or where a failed guard left it, made by ``quantize`` unless an
    earlier run in the same ``--work`` folder made it."""
    from mobilenets.export.quantize import rejected_path

    for path in (out, rejected_path(out)):
        if path.exists():
            return path
    return Path(quantize(*args, **kwargs).path)


def _real_v2_files(work: Path) -> tuple[Path, list[tuple[str, str, str, Path]]]:
    """The real V2's fp32 ONNX file and (network, quantizer, scheme, file) for each int8 file."""
    from mobilenets.cpu import SCHEMES, Int8Scheme
    from mobilenets.export.model_export import export_model
    from mobilenets.export.quantize import quantize_onnx, quantize_pte

    fp32 = export_model(WEIGHTS, work / "v2.onnx")
    uint8 = Int8Scheme("avx2", "uint8", "uint8", "ONNX Runtime's docs: no saturation")
    files = []
    for quantizer in ("nncf", "onnxruntime"):
        for name, scheme in [("vnni", SCHEMES["vnni"]), ("avx2", SCHEMES["avx2"]), ("u8", uint8)]:
            if quantizer == "nncf" and name == "u8":
                continue
            out = work / f"v2.{quantizer}.{name}.onnx"
            made = _made(out, quantize_onnx, fp32, out, "photos:large", target_cpu=scheme,
                         quantizer=quantizer)  # fmt: skip
            files.append(("real V2", quantizer, scheme.describe(), made))
    made = _made(work / "v2.int8.pte", quantize_pte, WEIGHTS, work / "v2.int8.pte", "photos:large")
    files.append(("real V2", "ExecuTorch PT2E", "XNNPACK's (any CPU)", made))
    return fp32, files


def _digits_files(work: Path, name: str) -> tuple[Path, list[tuple[str, str, str, Path]]]:
    """A digits network trained as the suite's ``trained`` fixture trains it, its fp32 ONNX
    file, and its int8 files (NNCF with either scheme; a ``.pte`` for V2, as the tests do)."""
    from mobilenets.cpu import SCHEMES
    from mobilenets.export.model_export import export_model
    from mobilenets.export.quantize import quantize_onnx, quantize_pte
    from mobilenets.training import TrainConfig, fit

    folder = work / f"trained-{name}"
    if not (folder / "summary.json").exists():
        config = TrainConfig(model=name, width_mult=0.5, epochs=10, out=str(folder), progress=False)
        fit(config, log=lambda _m: None)
    checkpoint = folder / "checkpoint.pt"
    fp32 = export_model(str(checkpoint), work / f"{name}.onnx")
    network = f"digits {name}"
    files = []
    for kind in ("vnni", "avx2"):
        out = work / f"{name}.{kind}.onnx"
        made = _made(out, quantize_onnx, fp32, out, "digits", target_cpu=kind)
        files.append((network, "nncf", SCHEMES[kind].describe(), made))
    if name == "mobilenet_v2":
        out = work / f"{name}.int8.pte"
        made = _made(out, quantize_pte, str(checkpoint), out, "digits")
        files.append((network, "ExecuTorch PT2E", "XNNPACK's (any CPU)", made))
    return fp32, files


def _segmenter_files(work: Path) -> tuple[Path, list[tuple[str, str, str, Path]]]:
    """LR-ASPP on V3-Small trained on the nuclei as the suite's ``nuclei_run`` fixture trains
    it, its fp32 ONNX file, and its int8 files (the default quantizer with either scheme, and a
    ``.pte``)."""
    from mobilenets.cpu import SCHEMES
    from mobilenets.export.model_export import export_model
    from mobilenets.export.quantize import quantize_onnx, quantize_pte
    from mobilenets.saved.onnx import onnx_metadata
    from mobilenets.training import TrainConfig, fit

    folder, name = work / "trained-nuclei", "lraspp_mobilenet_v3_small"
    if not (folder / "summary.json").exists():
        config = TrainConfig(
            model=name, data="nuclei", out=str(folder), epochs=8, batch_size=16,
            resolution=64, schedule="poly", progress=False,
        )  # fmt: skip
        fit(config, log=lambda _m: None)
    checkpoint = folder / "checkpoint.pt"
    fp32 = export_model(str(checkpoint), work / "lraspp.onnx")
    network, files = "nuclei LR-ASPP V3-Small (pixels)", []
    for kind in ("vnni", "avx2"):
        out = work / f"lraspp.{kind}.onnx"
        made = _made(out, quantize_onnx, fp32, out, "nuclei", target_cpu=kind)
        said = onnx_metadata(made)["quantization"]  # the default quantizer for this graph
        files.append(
            (network, "nncf" if "NNCF" in said else "onnxruntime", SCHEMES[kind].describe(), made)
        )
    out = work / "lraspp.int8.pte"
    made = _made(out, quantize_pte, str(checkpoint), out, "nuclei")
    files.append((network, "ExecuTorch PT2E", "XNNPACK's (any CPU)", made))
    return fp32, files


def _measure(qemu: str, cpu: str, work: Path) -> list[dict]:
    """Every file's agreement here and emulated, network by network."""
    from mobilenets.cpu import this_cpu
    from mobilenets.export.quantize import agreement

    here = this_cpu()
    groups = [(_real_v2_files, (work,), "photos:large")]
    groups += [(_digits_files, (work, n), "digits") for n in ("mobilenet_v1", "mobilenet_v2")]
    groups += [(_segmenter_files, (work,), "nuclei")]
    rows = []
    for make, arguments, data in groups:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a failed guard is the table's to say
            fp32_path, files = make(*arguments)
        inputs = work / f"{fp32_path.stem}.inputs.npy"
        np.save(inputs, _held_out(fp32_path, data))
        fp32 = _probabilities(fp32_path, np.load(inputs))
        for network, quantizer, scheme, path in files:
            start = time.perf_counter()
            row = {"network": network, "quantizer": quantizer, "scheme": scheme}
            row.update(images=len(fp32), file=path.name)
            row[here] = agreement(fp32, _probabilities(path, np.load(inputs)))
            row["emulated_avx2"] = agreement(fp32, _emulated(qemu, cpu, path, inputs))
            rows.append(row)
            print(
                f"{network}, {quantizer}, {scheme}: {row[here]} | {row['emulated_avx2']}"
                f" ({time.perf_counter() - start:.0f} s)",
                file=sys.stderr,
            )
    return rows


def _table(rows: list[dict], cpu: str, qemu_cpu: str) -> str:
    from mobilenets.cpu import this_cpu

    here = this_cpu()
    lines = [
        f"Agreement of int8 with fp32 (top-1), overall and where fp32 is ≥ 50% confident, on "
        f"{cpu} ({here}) and under QEMU as `-cpu {qemu_cpu}` (a Zen 3: AVX2 + FMA, no AVX-512, "
        "no VNNI; ONNX Runtime and XNNPACK take their AVX2 kernels). fp32 computed here. The "
        "real V2: 260 `photos:large` val crops; digits: 360 held-out images; nuclei: the "
        "65,536 pixels of 4 held-out 128-px tiles, per pixel.",
        "",
        f"| network | quantizer | int8 scheme | {here} (this CPU) | AVX2 (emulated) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            f"{r['agreement']:.2f}% ({r['confident_agreement']:.2f}% of {r['confident_images']})"
            for r in (row[here], row["emulated_avx2"])
        ]
        lines.append(
            f"| {row['network']} | {row['quantizer']} | {row['scheme']} | {cells[0]} | {cells[1]} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    if sys.argv[1:2] == ["--worker"]:
        return _worker(*sys.argv[2:5])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    unpacked = Path(__file__).parents[1] / ".qemu" / "usr" / "bin" / "qemu-x86_64-static"
    parser.add_argument(
        "--qemu",
        default=str(unpacked),
        help="QEMU's x86_64 user-mode emulator, ≥ 7.2 (default: the one .ci/run unpacks)",
    )
    parser.add_argument("--cpu", default="EPYC-Milan", help="QEMU's CPU model (default: Zen 3)")
    parser.add_argument("--work", help="a folder to keep the files in (default: a new one)")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    from mobilenets.cpu import cpu_name, this_cpu

    if this_cpu() != "vnni":
        print("note: this CPU has no VNNI: its column is already an AVX2 one", file=sys.stderr)
    work = Path(args.work or tempfile.mkdtemp(prefix="int8-emulated-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = _measure(args.qemu, args.cpu, work)
    text = _table(rows, cpu_name(), args.cpu)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_emulated_avx2.md").write_text(text)
    result = {"cpu": cpu_name(), "kind": this_cpu(), "qemu_cpu": args.cpu, "rows": rows}
    (out / "int8_emulated_avx2.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
