"""How long the command line takes to start: median of 10 fresh processes per command.

    python benchmarks/cli_startup.py [--runs 10] [--src DIR]

Each command runs as ``python -m mobilenets ...`` in a new interpreter (what a user waits for),
with ``MOBILENETS_NO_MALLOC_TUNING=1`` so no command re-executes itself. ``--src`` puts another
checkout's ``src/`` first on ``PYTHONPATH`` (e.g. a ``git worktree`` of an older commit) to
measure before and after on the same machine. ``import torch`` alone is the floor any command
that builds a network pays. ``mobilenets models`` is timed twice: with its counts cached (every
run after the first) and with an empty ``$MOBILENETS_CACHE`` each time (the first run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "mobilenets --help": ["-m", "mobilenets", "--help"],
    "mobilenets train --help": ["-m", "mobilenets", "train", "--help"],
    "mobilenets sweep --help": ["-m", "mobilenets", "sweep", "--help"],
    "mobilenets predict --help": ["-m", "mobilenets", "predict", "--help"],
    "mobilenets export --help": ["-m", "mobilenets", "export", "--help"],
    "mobilenets models": ["-m", "mobilenets", "models"],
    "mobilenets models (first run: nothing cached)": ["-m", "mobilenets", "models"],
    "python -c 'import torch' (floor)": ["-c", "import torch"],
}


def median_seconds(
    args: list[str], runs: int, env: dict, cold: bool = False
) -> tuple[float, float, float]:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as empty:
            run_env = {**env, "MOBILENETS_CACHE": empty} if cold else env
            start = time.perf_counter()
            subprocess.run([sys.executable, *args], env=run_env, capture_output=True, check=True)
            times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times), times[0], times[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--src", default=None, help="a checkout's src/ to measure instead")
    args = parser.parse_args()
    env = {**os.environ, "MOBILENETS_NO_MALLOC_TUNING": "1"}
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.src, env.get("PYTHONPATH")]))
    print(f"| command | median s ({args.runs} runs) | min | max |")
    print("|---|---|---|---|")
    for name, command in COMMANDS.items():
        median, low, high = median_seconds(command, args.runs, env, cold="first run" in name)
        print(f"| `{name}` | {median:.2f} | {low:.2f} | {high:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
