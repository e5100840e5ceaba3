"""``bench`` above one thread: each configuration timed alone in a fresh process.

With more than one thread, runtimes sharing a process disturb each other: a thread pool left
spinning by one (ONNX Runtime's workers, libgomp's, OpenVINO's TBB arena) holds the core another
runtime's second thread needs. Timed interleaved in one process at 2 threads on 2 cores, every
row's spread exceeded 25% of its median, and ONNX Runtime's V2 took 6.84 ms (p10–p90
4.19–10.83) against 3.78 ms (3.77–3.81) alone (``benchmarks/threads.py``). A user's ``predict``
holds one runtime; so does each timing here.

The configurations run ``rounds`` times, each round in a rotated order, so slow drift on the
machine falls on all alike; every child process builds one network and its runtime (exported
files are shared through ``workdir``: the first child of a backend writes them), warms it up
and times its calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mobilenets.errors import MobilenetsError
from mobilenets.schema import Positive, decode

Key = tuple[str, str, str]  # (model, source, backend)


@dataclass(frozen=True)
class TimingPlan:
    """What every configuration of one bench run is timed with."""

    batch_size: int
    resolution: int
    threads: int
    warmup: int
    runs: int


#: The longest one configuration's timing process may take (building, exporting and timing).
CHILD_TIMEOUT_S = 900


def time_isolated(
    keys: Sequence[Key],
    plan: TimingPlan,
    workdir: Path,
    rounds: int = 2,
    log: Callable[[str], None] = print,
) -> dict[Key, list[float]]:
    """Wall times (ms) of each configuration, ``plan.runs`` calls in all over ``rounds``
    rounds, each round's calls in a fresh process of their own."""
    per_round = max(5, -(-plan.runs // rounds))
    times: dict[Key, list[float]] = {key: [] for key in keys}
    order = list(keys)
    for round_ in range(rounds):
        shift = round_ * len(order) // rounds
        for step, key in enumerate(order[shift:] + order[:shift]):
            log(f"round {round_ + 1}/{rounds}, {step + 1}/{len(order)}: {' '.join(key)}")
            spec = {**asdict(plan), "key": key, "runs": per_round, "workdir": str(workdir)}
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "mobilenets.export.isolate", json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    env=os.environ,
                    timeout=CHILD_TIMEOUT_S,
                )
            except subprocess.TimeoutExpired:
                raise MobilenetsError(
                    f"timing {' '.join(key)} in its own process took over {CHILD_TIMEOUT_S} s; "
                    "stopped (is the machine overloaded?)"
                ) from None
            if done.returncode != 0:
                raise RuntimeError(
                    f"timing {' '.join(key)} in its own process failed:\n{done.stderr[-2000:]}"
                )
            last = (done.stdout.strip().splitlines() or [""])[-1].encode()
            times[key] += decode(
                last, list[Positive], f"the timing of {' '.join(key)}", MobilenetsError
            )
    return times


def _child(spec: dict) -> list[float]:
    """Build one configuration's network and runtime, time it (runs in the child process)."""
    import torch

    from mobilenets.complexity.latency import time_calls
    from mobilenets.export.references import reference_model
    from mobilenets.export.runtimes import prepare, torch_threads
    from mobilenets.models.registry import create_model

    name, source, backend = spec["key"]
    threads = spec["threads"]
    model = create_model(name).eval() if source == "mobilenets" else reference_model(name)[1]
    torch.manual_seed(0)
    size = spec["resolution"]
    x = torch.randn(spec["batch_size"], 3, size, size)
    with torch_threads(threads), torch.inference_mode():
        workdir, tag = Path(spec["workdir"]), f"{name}-{source}"
        call = prepare(model, backend, x, workdir=workdir, tag=tag, threads=threads)
        return time_calls(call, spec["warmup"], spec["runs"])


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
