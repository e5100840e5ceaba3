"""The full latency table: our four models beside torchvision's (timm's V1), every backend,
at 1 and 2 threads, with the roofline ratios and the issue's targets checked in the same run.

    python benchmarks/latency.py [--batch-size 1] [--resolution 224] [--runs 50] [--compile]
                                 [--out benchmarks/results/latency]

Runs ``mobilenets bench`` (``mobilenets.export.bench.run_bench``: every configuration timed
interleaved, roofs measured in the run, the machine's other load measured) once per thread
count, each in a process started with the glibc malloc tunables, into ``OUT/threads_N/``
(bench.md/.csv/.json/.png), then writes ``OUT/latency.md``: the fastest path per model and
thread count, and the targets:

- our best path beats torchvision eager by ≥ 5× at batch 1 for V2 and V3-Large;
- our best int8 path is at least as fast as ExecuTorch XNNPACK int8 measured beside it;
- V3-Small int8 (our best int8 path) is faster than its fp32 (our best fp32 path).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

BACKENDS = "eager,channels_last,ort,ort_int8,executorch,executorch_int8,openvino,openvino_int8"


def targets(rows: list[dict]) -> list[str]:
    """The issue's targets, each a ratio within this one run."""
    ours = [r for r in rows if r["source"] == "mobilenets"]
    lines = []
    for model in dict.fromkeys(r["model"] for r in ours):
        mine = [r for r in ours if r["model"] == model]
        best = min(mine, key=lambda r: r["median_ms"])
        int8 = [r for r in mine if r["backend"].endswith("_int8")]
        fp32 = [r for r in mine if not r["backend"].endswith("_int8")]
        best8 = min(int8, key=lambda r: r["median_ms"]) if int8 else None
        best32 = min(fp32, key=lambda r: r["median_ms"])
        line = (
            f"- {model}: fastest {best['backend']} {best['median_ms']:.2f} ms, "
            f"{best['speedup_vs_reference_eager']:.2f}× the reference's eager"
        )
        if model in ("mobilenet_v2", "mobilenet_v3_large"):
            ok = best["speedup_vs_reference_eager"] >= 5
            line += f" ({'meets' if ok else 'MISSES'} ≥ 5×)"
        et8 = next((r for r in int8 if r["backend"] == "executorch_int8"), None)
        if best8 and et8:
            ok = best8["median_ms"] <= et8["median_ms"]
            line += (
                f"; best int8 {best8['backend']} {best8['median_ms']:.2f} ms vs ExecuTorch int8 "
                f"{et8['median_ms']:.2f} ms ({'meets' if ok else 'MISSES'})"
            )
        if best8 and model == "mobilenet_v3_small":
            ok = best8["median_ms"] < best32["median_ms"]
            line += (
                f"; int8 {best8['median_ms']:.2f} ms vs fp32 {best32['backend']} "
                f"{best32['median_ms']:.2f} ms ({'faster: meets' if ok else 'NOT faster: MISSES'})"
            )
        lines.append(line)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add torch.compile (its first call takes about a minute per model)",
    )
    parser.add_argument("--out", default="benchmarks/results/latency")
    parser.add_argument(
        "--summarize-only", action="store_true", help="rewrite latency.md from OUT's results"
    )
    args = parser.parse_args()
    backends = BACKENDS + (",compile" if args.compile else "")
    out = Path(args.out)
    summary = [
        f"# Latency: batch {args.batch_size}, {args.resolution} px, {args.runs} interleaved "
        "rounds (`python benchmarks/latency.py`)",
        "",
    ]
    for threads in [int(t) for t in args.threads.split(",")]:
        folder = out / f"threads_{threads}"
        cmd = [
            sys.executable, "-m", "mobilenets", "bench",
            "--backends", backends,
            "--batch-size", str(args.batch_size),
            "--resolution", str(args.resolution),
            "--runs", str(args.runs),
            "--threads", str(threads),
            "--out", str(folder),
        ]  # fmt: skip
        if not args.summarize_only:
            subprocess.run(cmd, check=True, env=os.environ, stdout=subprocess.DEVNULL)
        data = json.loads((folder / "bench.json").read_text())
        load = data["other_cores"]
        wide = [r for r in data["rows"] if r["p90_ms"] - r["p10_ms"] > 0.25 * r["median_ms"]]
        summary += [
            f"## {threads} thread{'s' if threads > 1 else ''}",
            "",
            f"Roofs: {data['peaks']}; other processes used "
            + (f"{load:.2f} cores while timing" if load is not None else "unknown CPU"),
            f"(full table: `{folder}/bench.md`, plot `{folder}/bench.png`)",
            "",
            *(
                [
                    f"⚠ {len(wide)} of {len(data['rows'])} rows spread wider than 25% of their "
                    "median (p10–p90): the targets below are not to be trusted at this thread "
                    "count.",
                    "",
                ]
                if wide
                else []
            ),
            *targets(data["rows"]),
            "",
        ]
    (out / "latency.md").write_text("\n".join(summary))
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
