"""The CPU this runs on, and what follows from its kind.

Which int8 an ONNX model should hold depends on the CPU that will run it.

ONNX Runtime's x86 kernels multiply uint8 activations by int8 weights. With VNNI
(``vpdpbusd``) the products are summed in 32 bits. Without it (AVX2, AVX-512 without VNNI) they
use ``vpmaddubsw``, which adds pairs of products in 16 bits and saturates: on a 2-core Zen 3
(AVX2 only) the real MobileNetV2 quantized that way agreed with fp32 on 61.15% of 260 photo
crops (85.33% where fp32 is confident), against 69.23% (98.67%) on a VNNI Xeon (issue 30).
Two remedies, measured by ``benchmarks/int8_schemes.py`` (results/int8_schemes_vnni.md):

* 7-bit weights (ONNX Runtime's ``reduce_range``): a pair of products is at most
  2 × 255 × 64 < 2¹⁵, so nothing saturates, and the kernel is the fast uint8×int8 one (3.75 ms
  against 3.81 ms on the Xeon, batch 1, 1 thread); 67.31% (96.00%) on both machines;
* uint8 weights: another kernel, no 16-bit sums; 70.38% (96.00%) on both machines, but 2.3×
  slower than int8 weights on the Xeon (8.95 ms), slower even than fp32 (6.86 ms).

Both agree with fp32 to the image on both kinds of CPU (they do not saturate, so the integer
arithmetic is exact everywhere). So ``quantize`` picks the scheme for a target CPU, by default
this one:

========  ===============================  ============================================
target    weights / activations            why
========  ===============================  ============================================
vnni      int8 / uint8                     VNNI sums u8×s8 products in 32 bits: exact
                                           and fastest
avx2      int8 in 7 bits / uint8           no VNNI: 8-bit weights saturate 16-bit sums;
                                           7 bits cannot, at int8's speed
arm       int8 / uint8                     ARM's dot-product kernels widen before they
                                           add: nothing saturates
========  ===============================  ============================================

The target goes into the file's record; loading an int8 file on a CPU of another kind warns
once, with what to do.
"""

from __future__ import annotations

import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path

from mobilenets.errors import ConfigError, display

#: ``--target-cpu``'s choices; ``auto`` is this machine's kind.
TARGET_CPUS = ("auto", "vnni", "avx2", "arm")


@dataclass(frozen=True)
class Int8Scheme:
    """The int8 types of an ONNX Runtime QDQ model, and why they suit ``target``."""

    target: str  # vnni, avx2 or arm
    weights: str  # int8 or uint8
    activations: str  # uint8
    why: str
    reduce_range: bool = False  # 7-bit weights, which cannot saturate 16-bit sums

    def describe(self) -> str:
        seven = " (7 bits)" if self.reduce_range else ""
        return f"{self.weights}{seven} weights, {self.activations} activations, for {self.target}"


SCHEMES = {
    "vnni": Int8Scheme(
        "vnni",
        "int8",
        "uint8",
        "an x86 CPU with VNNI sums uint8×int8 products in 32 bits: exact, and the fastest",
    ),
    "avx2": Int8Scheme(
        "avx2",
        "int8",
        "uint8",
        "an x86 CPU without VNNI adds pairs of uint8×int8 products in 16 bits, which 8-bit "
        "weights saturate and 7-bit weights cannot; uint8 weights (no saturation either) were "
        "2.3× slower",
        reduce_range=True,
    ),
    "arm": Int8Scheme(
        "arm",
        "int8",
        "uint8",
        "ARM's dot-product kernels widen before they add, so nothing saturates",
    ),
}

#: What a file with 8-bit (False) or 7-bit (True) weights does on a CPU that wants the other.
_MISMATCH = {
    False: "its 8-bit weights can saturate this CPU's 16-bit sums, and int8 loses accuracy",
    True: "it runs correctly here, but 8-bit weights would agree with fp32 better",
}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where there is no /proc/cpuinfo)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.partition(":")[2].split())
    return set()


def cpu_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name, as figures that name their machine print it."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def this_cpu(machine: str | None = None, flags: set[str] | None = None) -> str:
    """This machine's kind: ``arm``, ``vnni`` (x86 with AVX-512 VNNI or AVX-VNNI) or ``avx2``
    (any other x86, and an x86 whose flags cannot be read: its scheme is right everywhere)."""
    machine = (machine or platform.machine()).lower()
    if machine.startswith(("arm", "aarch64")):
        return "arm"
    flags = cpu_flags() if flags is None else flags
    return "vnni" if flags & {"avx512_vnni", "avx_vnni"} else "avx2"


def int8_scheme(target_cpu: str | Int8Scheme | None = None) -> Int8Scheme:
    """The scheme for ``target_cpu`` (one of :data:`TARGET_CPUS`; None or ``auto``: this CPU;
    a scheme is returned as it is, for the benchmark that compares them)."""
    if isinstance(target_cpu, Int8Scheme):
        return target_cpu
    target = target_cpu or "auto"
    if target not in TARGET_CPUS:
        raise ConfigError(f"--target-cpu must be one of {', '.join(TARGET_CPUS)}, got {target!r}")
    return SCHEMES[this_cpu() if target == "auto" else target]


_warned: set[str] = set()


def warn_if_other_cpu(path: str | Path, made_for: object) -> None:
    """Warn once per file when an int8 model made for one kind of CPU loads on another kind
    whose scheme differs (a file made for ``arm`` runs as it should on ``vnni``)."""
    here = this_cpu()
    if made_for not in SCHEMES or str(path) in _warned:
        return
    seven_bits = SCHEMES[made_for].reduce_range
    if seven_bits == SCHEMES[here].reduce_range:
        return
    _warned.add(str(path))
    warnings.warn(
        f"{display(path)}'s int8 was made for a {made_for} CPU and this one is {here}: "
        f"{_MISMATCH[seven_bits]}; quantize it again here (mobilenets quantize picks this CPU's "
        f"scheme) or with --target-cpu {here}",
        UserWarning,
        stacklevel=3,
    )


# --- Sharing the cores ------------------------------------------------------------------------

#: Commands that keep every core busy for long, whose OpenMP threads sleep when they wait
#: (``OMP_WAIT_POLICY=PASSIVE``) unless the user chose a policy. libgomp's threads otherwise spin
#: between parallel regions and take the cores from whatever else runs, our own processes
#: included (sweep cells, torchrun workers, two trainings side by side):
#: ``benchmarks/busy_machine.py``. Not bench, adapt or predict: they time or answer single
#: calls, where a sleeping thread's wake-up is part of every call.
PASSIVE_COMMANDS = frozenset({"train", "sweep", "eval"})
_threads: int | None = None


def process_env(command: str, environ: dict[str, str]) -> dict[str, str]:
    """The OpenMP variables ``command`` should start with that ``environ`` lacks."""
    if command in PASSIVE_COMMANDS and "OMP_WAIT_POLICY" not in environ:
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    return {}


def set_threads(threads: int) -> None:
    """Compute with ``threads`` threads in this process: torch's intra-op pool and every
    runtime session opened afterwards (ONNX Runtime, OpenVINO, ExecuTorch)."""
    global _threads
    import torch

    _threads = threads
    torch.set_num_threads(threads)


def chosen_threads() -> int | None:
    """The thread count ``--threads`` chose, or None (each runtime's default)."""
    return _threads


def default_threads() -> int:
    """Threads for a runtime session: ``--threads``, else every core."""
    return _threads or os.cpu_count() or 1


def busy_notice(load: float | None = None, cores: int | None = None) -> str | None:
    """One line when other programs keep at least half the cores busy (the 1-minute load
    average), so that slow or noisy figures are not taken for the toolkit's."""
    cores = cores or os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # no load average on this system
            return None
    if load < max(1.0, cores / 2):
        return None
    return (
        f"mobilenets: the load average is {load:.1f} on {cores} cores: other programs are "
        "computing, so this runs slower than on a quiet machine and its timings are noisy"
    )
