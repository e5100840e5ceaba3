"""The full latency table: our four models beside torchvision's (timm's V1), every backend.

    python benchmarks/latency.py [--batch-size 1] [--resolution 224] [--compile] [--out DIR]

Runs ``mobilenets bench`` (``mobilenets.export.bench.run_bench``) in a process started with the
glibc malloc tunables, writes bench.md/.csv/.json/.png to DIR (default benchmarks/results) and
prints the table plus the issue's targets checked against this run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add torch.compile (its first call takes about a minute per model)",
    )
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    backends = "eager,channels_last" + (",compile" if args.compile else "") + ",ort,ort_int8"
    cmd = [
        sys.executable,
        "-m",
        "mobilenets",
        "bench",
        "--backends",
        backends,
        "--batch-size",
        str(args.batch_size),
        "--resolution",
        str(args.resolution),
        "--runs",
        str(args.runs),
        "--out",
        args.out,
    ]
    subprocess.run(cmd, check=True, env=os.environ)
    rows = json.loads((Path(args.out) / "bench.json").read_text())["rows"]
    ours = [r for r in rows if r["source"] == "mobilenets"]
    print("targets (batch 1, 224 px):")
    for model in dict.fromkeys(r["model"] for r in ours):
        mine = [r for r in ours if r["model"] == model]
        best = min(mine, key=lambda r: r["median_ms"])
        fp32 = min((r for r in mine if r["backend"] != "ort_int8"), key=lambda r: r["median_ms"])
        int8 = next((r for r in mine if r["backend"] == "ort_int8"), None)
        line = (
            f"- {model}: best {best['backend']} {best['median_ms']:.2f} ms = "
            f"{best['speedup_vs_reference_eager']:.2f}× reference eager; best fp32 "
            f"{fp32['backend']} {fp32['median_ms']:.2f} ms = {fp32['vs_roofline']:.2f}× the "
            f"roofline bound"
        )
        if int8:
            faster = "faster" if int8["median_ms"] < fp32["median_ms"] else "NOT faster"
            line += f"; int8 {int8['median_ms']:.2f} ms, {faster} than fp32"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
