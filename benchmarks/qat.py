"""Post-training int8 against quantization-aware training, on real photographs.

    python benchmarks/qat.py [--model mobilenet_v2] [--seeds 3] [--resolution 96] [--epochs N]
                             [--qat-epochs 3] [--qat-bn-epochs N] [--out DIR]

Per seed, on the ``photos`` task (13 scikit-image photographs; train and val patches from
disjoint parts of each photo):

1. the fp32 network: for ``mobilenet_v2``, torchvision's IMAGENET1K_V1 fine-tuned (``--epochs``,
   default 6, frozen BN statistics: the best recipe of ``benchmarks/finetune.py``); for
   ``mobilenet_v3_small`` and ``mobilenet_v3_large``, trained from scratch (``--epochs``, default
   30: no ImageNet V3 weights install offline); its fp32 top-1;
2. its int8 ExecuTorch program by post-training quantization (``quantize --out FILE.pte``:
   PT2E, XNNPACK quantizer, 256 calibration patches): int8 top-1;
3. ``train --qat`` from that run for ``--qat-epochs`` (from ImageNet weights with the BatchNorm
   statistics kept frozen, ``--qat-bn-epochs 0``, as the fine-tuning kept them), then
   ``quantize`` of the QAT checkpoint (its trained scales, nothing calibrated): int8 top-1;
   and, as the control for QAT's extra training, the fp32 run for ``--epochs`` +
   ``--qat-epochs``;
4. both programs timed interleaved in one process (batch 1, 1 thread, medians): the same graph,
   so the same latency is expected;
5. fp32, both programs and the control judged again on six times the held-out patches (1,560:
   the val split and five more cut the same way from the held-out part of each photograph, data
   seeds 1-5), where one patch is 0.06 point, not 0.38.

Writes ``qat_photos_<model>_<kind>.md`` and ``.json`` to DIR (default benchmarks/results) and
prints the table; the CPU it ran on is in its first line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from mobilenets.malloc import MALLOC_TUNABLES, should_reexec

#: The photos data seeds whose val splits make the wider held-out set (0: the val split itself);
#: every val patch is cut from the right 35% of its photograph, which no training patch touches.
WIDE_SEEDS = range(6)

#: The start of each network: ImageNet weights fine-tuned, or from scratch (epochs by default).
STARTS = {
    "mobilenet_v2": ("torchvision:mobilenet_v2.IMAGENET1K_V1", 6),
    "mobilenet_v3_small": (None, 30),
    "mobilenet_v3_large": (None, 30),
}


def one_seed(seed: int, args: argparse.Namespace, folder: Path) -> dict:
    from mobilenets.export.quantize import quantize_pte
    from mobilenets.training import TrainConfig, fit

    quiet = {"log": lambda _m: None}
    common = {"data": "photos", "resolution": args.resolution, "seed": seed, "progress": False}
    weights = STARTS[args.model][0]
    start = TrainConfig(
        model=args.model, weights=weights, epochs=args.epochs, freeze_bn=weights is not None,
        out=str(folder / "ft"), **common,
    )  # fmt: skip
    fit(start, **quiet)
    ptq = quantize_pte(str(folder / "ft" / "checkpoint.pt"), folder / "ptq.pte", "photos")
    qat_run = fit(
        TrainConfig(
            weights=str(folder / "ft" / "checkpoint.pt"), qat=True, epochs=args.qat_epochs,
            qat_bn_epochs=args.qat_bn_epochs, out=str(folder / "qat"), **common,
        ),
        **quiet,
    )  # fmt: skip
    qat = quantize_pte(str(folder / "qat" / "checkpoint.pt"), folder / "qat.pte", "photos")
    longer = replace(start, epochs=args.epochs + args.qat_epochs, out=str(folder / "longer"))
    control = fit(longer, **quiet)  # fp32 with as many epochs as fine-tuning + QAT
    ptq_ms, qat_ms = timings(Path(ptq.path), Path(qat.path), args.resolution)
    wide = wide_evaluation(folder, ptq, qat)
    return {
        "seed": seed,
        "fp32": ptq.fp32_top1,
        "ptq_int8": ptq.int8_top1,
        "ptq_agreement": ptq.agreement,
        "qat_fake_int8": qat_run.top1,
        "qat_reference_fp32": qat.fp32_top1,  # the network the QAT run started from
        "qat_int8": qat.int8_top1,
        "qat_agreement": qat.agreement,
        "fp32_longer": control.top1,
        "ptq_ms": ptq_ms,
        "qat_ms": qat_ms,
        **wide,
    }


def held_out(info: object) -> tuple:
    """The wider held-out set (:data:`WIDE_SEEDS`' val splits, as image folders, preprocessed
    as the network ``info`` records): images, labels and how many are the val split (the
    first)."""
    import torch

    from mobilenets.data import build_dataset, default_data_root
    from mobilenets.data.photos import prepare_photos

    root, preprocess = default_data_root(), info.eval_transform()
    splits = [
        build_dataset(
            str(prepare_photos(root, "small", data_seed)), "val", info.input_size,
            preprocess=preprocess,
        )
        for data_seed in WIDE_SEEDS
    ]  # fmt: skip
    assert all(split.classes == splits[0].classes for split in splits)
    images, labels = zip(*(split[i] for split in splits for i in range(len(split))), strict=True)
    return torch.stack(images), torch.tensor(labels), len(splits[0])


def wide_evaluation(folder: Path, ptq: object, qat: object) -> dict:
    """Top-1 of the fp32 network, its control and both int8 programs (agreement with fp32 too)
    on the wider held-out set; on its first 260 patches (the val split) the fp32 network must
    score what ``quantize`` measured (within a patch: batches of another size), or the
    preprocessing differs."""
    import torch

    from mobilenets.saved.edge import PteProgram
    from mobilenets.weights import load

    network, info = load(str(folder / "ft" / "checkpoint.pt"))
    images, labels, first = held_out(info)
    with torch.no_grad():
        predicted = {
            name: torch.cat([net.eval()(batch).argmax(1) for batch in images.split(130)])
            for name, net in (
                ("fp32", network),
                ("fp32_longer", load(str(folder / "longer" / "checkpoint.pt"))[0]),
            )
        }
        for name, report in (("ptq_int8", ptq), ("qat_int8", qat)):
            program = PteProgram(Path(report.path), 1)
            predicted[name] = torch.cat([program(x[None]).argmax(1) for x in images])
    val_top1 = 100 * (predicted["fp32"][:first] == labels[:first]).float().mean().item()
    if abs(val_top1 - ptq.fp32_top1) > 100 / first + 1e-6:
        raise RuntimeError(
            f"fp32 {val_top1:.2f}% on the val split here, {ptq.fp32_top1:.2f}% in quantize"
        )
    row = {f"wide_{k}": 100 * (v == labels).float().mean().item() for k, v in predicted.items()}
    for name in ("ptq_int8", "qat_int8"):
        same = predicted[name] == predicted["fp32"]
        row[f"wide_{name.split('_')[0]}_agreement"] = 100 * same.float().mean().item()
    return {**row, "wide_images": len(labels)}


def timings(ptq: Path, qat: Path, size: int, runs: int = 200) -> tuple[float, float]:
    """Median ms of both programs, batch 1, one thread, interleaved; then the threads as
    before, or the next seed trains on one thread, another network than on two (V3-Large seed
    2: fp32 84.62% on one thread, 81.54% on two)."""
    import torch

    from mobilenets.complexity.latency import spread, time_interleaved
    from mobilenets.export.runtimes import torch_threads
    from mobilenets.saved.edge import PteProgram

    with torch_threads(1):
        x = torch.randn(1, 3, size, size)
        programs = {"ptq": PteProgram(ptq, 1), "qat": PteProgram(qat, 1)}
        calls = {name: (lambda p=p: p(x)) for name, p in programs.items()}
        times = time_interleaved(calls, 10, runs)
    return spread(times["ptq"])[0], spread(times["qat"])[0]


def table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"photos, {args.resolution} px, {args.model} {_start(args)}, then QAT {args.qat_epochs} "
        f"epochs ({_bn(args)}); {_cpu()}",
        "",
        "| seed | fp32 top-1 | PTQ int8 (.pte) | QAT int8 (.pte) | QAT fake int8 "
        "| fp32, as many epochs | PTQ ms | QAT ms | PTQ agreement | QAT agreement |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['fp32']:.2f}% | {r['ptq_int8']:.2f}% | {r['qat_int8']:.2f}% | "
            f"{r['qat_fake_int8']:.2f}% | {r['fp32_longer']:.2f}% | "
            f"{r['ptq_ms']:.3f} | {r['qat_ms']:.3f} | "
            f"{r['ptq_agreement']:.2f}% | {r['qat_agreement']:.2f}% |"
        )
    means = {k: statistics.mean(r[k] for r in rows) for k in rows[0] if k != "seed"}
    spreads = {k: max(r[k] for r in rows) - min(r[k] for r in rows) for k in means}
    with_spread = [f"{means[k]:.2f}% ({spreads[k]:.2f})" for k in ("fp32", "ptq_int8", "qat_int8")]
    plain = [f"{means[k]:.2f}%" for k in ("qat_fake_int8", "fp32_longer")]
    ms = [f"{means[k]:.3f} ({spreads[k]:.3f})" for k in ("ptq_ms", "qat_ms")]
    agreement = [f"{means[k]:.2f}%" for k in ("ptq_agreement", "qat_agreement")]
    lines.append("| mean (spread) | " + " | ".join(with_spread + plain + ms + agreement) + " |")
    lines += [
        "",
        "PTQ and QAT int8 top-1 are each judged by `quantize`'s accuracy guard against the "
        "trained fp32 network (the QAT run's start); 'as many epochs' is the fp32 run for "
        "the epochs of training and QAT together (the control for QAT's extra training). "
        "ms: batch 1, 1 thread, medians of 200 interleaved calls. Agreement: held-out patches "
        "where the int8 program's top-1 is the fp32 network's (the QAT run's start), a paired "
        "measure: QAT's epochs move the network as well as quantize it.",
        "",
        *wide_table(rows),
    ]
    return "\n".join(lines)


def wide_table(rows: list[dict]) -> list[str]:
    """The same networks and programs on the wider held-out set (:func:`held_out`)."""
    keys = ("fp32", "ptq_int8", "qat_int8", "fp32_longer", "ptq_agreement", "qat_agreement")
    lines = [
        f"The same networks and programs on {rows[0]['wide_images']:,} held-out patches (the val "
        f"split and {len(WIDE_SEEDS) - 1} more cut as it is from the held-out part of each "
        "photograph; one patch is "
        f"{100 / rows[0]['wide_images']:.2f} point):",
        "",
        "| seed | fp32 top-1 | PTQ int8 (.pte) | QAT int8 (.pte) | fp32, as many epochs "
        "| PTQ − fp32 | QAT − fp32 | PTQ agreement | QAT agreement |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cells = [{k: r[f"wide_{k}"] for k in keys} for r in rows]
    for row in cells:
        row["ptq_delta"] = row["ptq_int8"] - row["fp32"]
        row["qat_delta"] = row["qat_int8"] - row["fp32"]
    order = (*keys[:4], "ptq_delta", "qat_delta", *keys[4:])
    for r, row in zip(rows, cells, strict=True):
        lines.append(f"| {r['seed']} | " + " | ".join(_cell(k, row[k]) for k in order) + " |")
    means = {k: statistics.mean(row[k] for row in cells) for k in order}
    spreads = {k: max(row[k] for row in cells) - min(row[k] for row in cells) for k in order}
    lines.append(
        "| mean (spread) | "
        + " | ".join(f"{_cell(k, means[k])} ({spreads[k]:.2f})" for k in order)
        + " |"
    )
    return lines


def _cell(key: str, value: float) -> str:
    return f"{value:+.2f}" if key.endswith("delta") else f"{value:.2f}%"


def _start(args: argparse.Namespace) -> str:
    if STARTS[args.model][0] is None:
        return f"from scratch ({args.epochs} epochs)"
    return f"from ImageNet weights ({args.epochs} epochs, frozen BN statistics)"


def _bn(args: argparse.Namespace) -> str:
    from mobilenets.training import TrainConfig

    qat = TrainConfig(
        weights="start", qat=True, epochs=args.qat_epochs, qat_bn_epochs=args.qat_bn_epochs
    )
    bn = qat.qat_phases[0]  # train's own rule for the default
    return (
        f"BatchNorm statistics updated for {bn} of them"
        if bn
        else "BatchNorm statistics kept frozen"
    )


def _cpu() -> str:
    from mobilenets.cpu import cpu_name, this_cpu

    return f"{cpu_name()}, {os.cpu_count()} cores ({this_cpu()})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=96)
    parser.add_argument("--model", choices=sorted(STARTS), default="mobilenet_v2")
    parser.add_argument("--epochs", type=int, help="default: 6 from ImageNet weights, else 30")
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument(
        "--qat-bn-epochs",
        type=int,
        help="default: 0 (kept frozen) from ImageNet weights, fine-tuned with frozen BatchNorm "
        "statistics; else train's default (half the QAT epochs)",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    args.epochs = args.epochs or STARTS[args.model][1]
    if args.qat_bn_epochs is None and STARTS[args.model][0] is not None:
        args.qat_bn_epochs = 0  # the start kept ImageNet's statistics; QAT keeps them too
    rows = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as folder:
            rows.append(one_seed(seed, args, Path(folder)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    text = table(rows, args)
    out = Path(args.out)
    from mobilenets.cpu import this_cpu

    name = f"qat_photos_{args.model}_{this_cpu()}"
    (out / f"{name}.md").write_text(text + "\n")
    (out / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    if should_reexec():
        environ = {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNABLES}  # PERF_NOTES.md
        os.execve(sys.executable, [sys.executable, *sys.argv], environ)
    main()
