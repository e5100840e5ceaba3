"""Training throughput on a machine others are using: OpenMP's waiting policy, measured.

    python benchmarks/busy_machine.py [--epochs 4] [--out benchmarks/results]

``mobilenets train --model mobilenet_v1 --data digits --resolution 64`` (the suite's and the
README's workload), its img/s (the median of the epochs after the first, from metrics.csv), in
three situations, each with OpenMP's default waiting (threads spin between parallel regions) and
with ``OMP_WAIT_POLICY=PASSIVE`` (they sleep). Each training runs ``main([...])`` in a fresh
interpreter with the environment set here (the glibc tunables the command line sets, the
policy or none), so the command line's own choice does not mix in:

* alone;
* beside two busy processes (each a Python loop that keeps one core busy);
* two of these trainings at once, the second started 3 s after the first (both figures);
* the same two with a core's share of threads each (``OMP_NUM_THREADS`` = cores / 2), as the
  test suite's two workers run (tests/conftest.py);

and, third, as ``python -m mobilenets train`` runs it, deciding for itself (it waits passively
when it finds other processes computing when it starts, another of our commands running,
torchrun workers beside it, or a sweep shard).

PyTorch's OpenMP threads spin while they wait, and spinning threads take the cores from any
other process that wants them, ours included. The table names this CPU. Writes
``busy_machine_<kind>.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mobilenets.cpu import cpu_name, this_cpu
from mobilenets.malloc import MALLOC_TUNABLES

SPIN = "while True: pass"


SHARED_THREADS = "two of ours at once, a core's share of threads each"


def train(folder: Path, policy: str, epochs: int, threads: int | None = None) -> subprocess.Popen:
    """One training: ``policy`` "default" (libgomp's) or "PASSIVE" through ``main([...])``, which
    sets nothing; "the command line" through ``python -m mobilenets``, which decides;
    ``threads``: its OpenMP threads (None: torch's default, every core)."""
    env = {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNABLES}
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    if policy == "PASSIVE":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    flags = ["train", "--model", "mobilenet_v1", "--data", "digits", "--resolution", "64"]
    flags += ["--epochs", str(epochs), "--out", str(folder), "--no-progress"]
    code = f"import sys; from mobilenets.cli.main import main; sys.exit(main({flags!r}))"
    command = ["-m", "mobilenets", *flags] if policy == "the command line" else ["-c", code]
    return subprocess.Popen(
        [sys.executable, *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def throughput(folder: Path) -> float:
    with open(folder / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return statistics.median(float(r["images_per_second"]) for r in rows[1:])


def situation(work: Path, name: str, policy: str, epochs: int) -> list[float]:
    """img/s of each of our trainings in situation ``name`` (two at once: 3 s apart)."""
    hogs = []
    if name == "beside two busy processes":
        hogs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(2)]
    try:
        count = 2 if name.startswith("two of ours at once") else 1
        threads = max(1, (os.cpu_count() or 1) // 2) if name == SHARED_THREADS else None
        folders = [work / f"{name}-{policy}-{k}".replace(" ", "_") for k in range(count)]
        runs = []
        for folder in folders:
            if runs:
                time.sleep(3)
            runs.append(train(folder, policy, epochs, threads))
        if any(run.wait() for run in runs):
            raise SystemExit(f"a training failed in situation {name!r}")
        return [throughput(folder) for folder in folders]
    finally:
        for hog in hogs:
            hog.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="busy-"))
    lines = [
        f"`mobilenets train --model mobilenet_v1 --data digits --resolution 64`, img/s (median "
        f"of epochs 2–{args.epochs}); CPU: {cpu_name()}, {os.cpu_count()} cores, kind "
        f"{this_cpu()}.",
        "",
        "| situation | libgomp's default (threads spin a while) | OMP_WAIT_POLICY=PASSIVE "
        "| the command line's choice |",
        "|---|---|---|---|",
    ]
    for name in ("alone", "beside two busy processes", "two of ours at once", SHARED_THREADS):
        cells = []
        for policy in ("default", "PASSIVE", "the command line"):
            speeds = situation(work, name, policy, args.epochs)
            cells.append(" + ".join(f"{s:.0f}" for s in speeds))
            print(f"{name}, {policy}: {cells[-1]} img/s", file=sys.stderr)
        lines.append(f"| {name} | {' | '.join(cells)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"busy_machine_{this_cpu()}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
