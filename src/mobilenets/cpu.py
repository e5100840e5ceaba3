"""The CPU this runs on, and what follows from its kind.

Which int8 an ONNX model should hold depends on the CPU that will run it.

ONNX Runtime's x86 kernels multiply uint8 activations by int8 weights. With VNNI
(``vpdpbusd``) the products are summed in 32 bits. Without it (AVX2, AVX-512 without VNNI) they
use ``vpmaddubsw``, which adds pairs of products in 16 bits and saturates: on a 2-core Zen 3
(AVX2 only) the real MobileNetV2 quantized that way agreed with fp32 on 61.15% of 260 photo
crops (85.33% where fp32 is confident), against 69.23% (98.67%) on a VNNI Xeon (issue 30).
Two remedies, measured by ``benchmarks/int8_schemes.py`` (results/int8_schemes_vnni.md):

* 7-bit weights (ONNX Runtime's ``reduce_range``): a pair of products is at most
  2 × 255 × 64 < 2¹⁵, so nothing saturates, and the kernel is the fast uint8×int8 one (3.15 ms
  against 3.24 ms on the Xeon, batch 1, 1 thread); 67.31% (96.00%) on both machines;
* uint8 weights: another kernel, no 16-bit sums; 70.38% (96.00%) on both machines, but 2.3×
  slower than int8 weights on the Xeon (7.43 ms), slower even than fp32 (5.68 ms).

Both agree with fp32 to the image on both kinds of CPU (they do not saturate, so the integer
arithmetic is exact everywhere); so do the files of NNCF's quantizer, the default, run under
QEMU as a Zen 3 (``benchmarks/int8_emulated.py``: 86.15% for the avx2 scheme on both). So
``quantize`` picks the scheme for a target CPU, by default this one:

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

A VNNI CPU whose oneDNN is held below VNNI (``ONEDNN_MAX_CPU_ISA=AVX2``) is an avx2 target:
OpenVINO there sums as an AVX2 CPU does (:func:`int8_cpu`). The target goes into the file's
record; loading an int8 file on a CPU of another kind warns once, with what to do.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
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


def cpuid_flags() -> set[str]:
    """The features the processor itself reports (CPUID, read by torch's cpuinfo), named as
    Linux names them; :func:`cpu_flags` where this torch cannot say.

    These are what ONNX Runtime's and XNNPACK's kernels dispatch on. They differ from
    /proc/cpuinfo under an emulator: ``qemu-x86_64 -cpu EPYC-Milan`` reports a Zen 3 without
    VNNI while /proc/cpuinfo still describes the host (``benchmarks/int8_emulated.py``)."""
    import torch

    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:
        return cpu_flags()
    return {name for name, value in capabilities().items() if value is True}


def this_cpu(machine: str | None = None, flags: set[str] | None = None) -> str:
    """This machine's kind: ``arm``, ``vnni`` (x86 with AVX-512 VNNI or AVX-VNNI) or ``avx2``
    (any other x86, and an x86 whose flags cannot be read: its scheme is right everywhere).
    ``flags`` default to :func:`cpuid_flags`."""
    machine = (machine or platform.machine()).lower()
    if machine.startswith(("arm", "aarch64")):
        return "arm"
    flags = cpuid_flags() if flags is None else flags
    return "vnni" if flags & {"avx512_vnni", "avx_vnni"} else "avx2"


#: oneDNN's ISA levels without VNNI (``ONEDNN_MAX_CPU_ISA``; the others, AVX2_VNNI and
#: AVX512_CORE_VNNI up, keep it, as do ALL and DEFAULT).
ONEDNN_ISAS_WITHOUT_VNNI = frozenset({"SSE41", "AVX", "AVX2", "AVX512_CORE"})


def int8_cpu(environ: Mapping[str, str] | None = None) -> str:
    """The kind of CPU int8 runs on here, for the scheme: :func:`this_cpu`, except on a VNNI
    CPU whose oneDNN is held below VNNI (``ONEDNN_MAX_CPU_ISA=AVX2``: docs/cpu.md). OpenVINO's
    kernels then add pairs of int8 products in 16 bits as an AVX2 CPU's do (8-bit weights
    agreed 86.94% with fp32 on the digits, 7-bit 99.17%), so the file must be ``avx2``'s; ONNX
    Runtime keeps the VNNI kernels, which run a 7-bit file exactly."""
    here = this_cpu()
    isa = (os.environ if environ is None else environ).get("ONEDNN_MAX_CPU_ISA", "")
    if here == "vnni" and isa.strip().upper() in ONEDNN_ISAS_WITHOUT_VNNI:
        return "avx2"
    return here


def int8_scheme(target_cpu: str | Int8Scheme | None = None) -> Int8Scheme:
    """The scheme for ``target_cpu`` (one of :data:`TARGET_CPUS`; None or ``auto``: this CPU's,
    :func:`int8_cpu`; a scheme is returned as it is, for the benchmark that compares them)."""
    if isinstance(target_cpu, Int8Scheme):
        return target_cpu
    target = target_cpu or "auto"
    if target not in TARGET_CPUS:
        raise ConfigError(f"--target-cpu must be one of {', '.join(TARGET_CPUS)}, got {target!r}")
    if target != "auto":
        return SCHEMES[target]
    kind = int8_cpu()
    if kind != this_cpu():
        held = f"ONEDNN_MAX_CPU_ISA={os.environ['ONEDNN_MAX_CPU_ISA']}"
        why = f"{held} holds oneDNN (OpenVINO) below VNNI, and {SCHEMES[kind].why}"
        return replace(SCHEMES[kind], why=why)
    return SCHEMES[kind]


_warned: set[str] = set()


def warn_if_other_cpu(path: str | Path, made_for: object) -> None:
    """Warn once per file when an int8 model made for one kind of CPU loads on another kind
    whose scheme differs (a file made for ``arm`` runs as it should on ``vnni``)."""
    here = int8_cpu()
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


class MachineLoad:
    """How busy the machine's *other* processes keep its CPUs while a block runs: the CPU time
    every process spent (``/proc/stat``) less this process's own and its finished children's
    (the processes it timed in), per second of wall time, in cores. ``None`` where
    ``/proc/stat`` is not readable."""

    def __enter__(self) -> MachineLoad:
        self._start = (time.perf_counter(), _busy_seconds(), _own_seconds())
        self.other_cores: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        wall, busy, own = self._start
        now_busy = _busy_seconds()
        if busy is not None and now_busy is not None:
            elapsed = max(time.perf_counter() - wall, 1e-9)
            other = (now_busy - busy) - (_own_seconds() - own)
            self.other_cores = max(0.0, other / elapsed)


def _own_seconds() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    times = os.times()
    return time.process_time() + times.children_user + times.children_system


def _busy_seconds() -> float | None:
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def others_busy(seconds: float = 0.25) -> float | None:
    """How many cores other processes keep busy right now (``/proc/stat`` over ``seconds``);
    None where it cannot be read."""
    with MachineLoad() as load:
        time.sleep(seconds)
    return load.other_cores


def note_computing() -> list[int]:
    """Note this process among this user's computing commands (an empty file named by its pid
    in the cache folder's ``computing/``, removed at exit) and return the pids of the others
    still running. It notes itself before it looks, so of two commands started at once each
    sees the other, or the second sees the first: the CPU load cannot tell while they are still
    loading torch (two trainings started 3 s apart both spun: 30 + 32 img/s against 188 + 191
    sleeping, ``benchmarks/busy_machine.py``). Names that are not pids are ignored, files whose
    process is gone are removed; where the folder cannot be written nothing is noted."""
    from mobilenets.fileio import cache_dir

    try:
        folder = cache_dir() / "computing"
        folder.mkdir(exist_ok=True)
        mine = folder / str(os.getpid())
        mine.touch()
        entries = [e.name for e in folder.iterdir()]
    except OSError:
        return []
    atexit.register(mine.unlink, missing_ok=True)
    others = []
    for name in entries:
        if not name.isdecimal() or int(name) == os.getpid():
            continue
        if _ours_running(int(name)):
            others.append(int(name))
        else:
            with contextlib.suppress(OSError):
                (folder / name).unlink()
    return sorted(others)


def _ours_running(pid: int) -> bool:
    """Whether ``pid`` runs, and (where /proc says) runs mobilenets, not a process that reused
    the pid of one that was killed."""
    from mobilenets.fileio import pid_alive

    if not pid_alive(pid):
        return False
    if not Path("/proc/self").exists():
        return True  # no /proc to ask: it runs
    try:
        return b"mobilenets" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _sharing(
    argv: Sequence[str], environ: Mapping[str, str], busy: float | None, ours: Sequence[int] = ()
) -> str:
    """Why this command will share the cores with other computing processes ("" if it will
    not): torchrun workers on one machine, a sweep shard, our other commands running
    (:func:`note_computing`), other processes busy now."""
    cores = os.cpu_count() or 1
    if int(environ.get("LOCAL_WORLD_SIZE", "1") or 1) > 1:  # what it will share, for certain
        return "torchrun runs several workers on this machine"
    shard = next((argv[k + 1] for k, a in enumerate(argv[:-1]) if a == "--shard"), "")
    if shard.partition("/")[2] not in ("", "1"):
        return "a sweep shard runs beside the others"
    if ours:
        pids = ", ".join(str(pid) for pid in ours)
        if len(ours) == 1:
            return f"another mobilenets command computes on this machine (pid {pids})"
        return f"other mobilenets commands compute on this machine (pids {pids})"
    if busy is not None and busy >= max(1.0, cores / 2):
        return f"other processes keep {busy:.1f} of {cores} cores busy"
    return ""


#: Commands that train or evaluate for long, whose OpenMP threads sleep while they wait
#: (``OMP_WAIT_POLICY=PASSIVE``) when they share the cores, unless the user chose a policy.
#: libgomp's threads otherwise spin between parallel regions and take the cores from whatever
#: else computes, our own processes included: two trainings at once went from 93 + 93 img/s
#: to 177 + 181 when both sleep (``benchmarks/busy_machine.py``, VNNI Xeon; an earlier run
#: 93 + 61 to 196 + 193). Alone, spinning is faster (3% for V1 at
#: 64 px, 17% for α = 0.25 at 32 px), so a command alone keeps it. Not bench or adapt: they time
#: single calls, where a sleeping thread's wake-up is part of every call.
PASSIVE_COMMANDS = frozenset({"train", "sweep", "eval"})
_threads: int | None = None


def process_env(
    argv: Sequence[str],
    environ: Mapping[str, str],
    busy: float | None = None,
    ours: Sequence[int] = (),
) -> tuple[dict[str, str], str]:
    """The OpenMP variables the command ``argv`` should start with that ``environ`` lacks, and
    one line saying why (or that the machine is busy), for stderr; ``busy``: :func:`others_busy`;
    ``ours``: our other commands running, :func:`note_computing`."""
    command = argv[0] if argv else ""
    why = _sharing(argv, environ, busy, ours)
    if not why:
        return {}, ""
    if command in PASSIVE_COMMANDS and "OMP_WAIT_POLICY" not in environ:
        return {"OMP_WAIT_POLICY": "PASSIVE"}, (
            f"mobilenets: {why}, so this command's threads sleep while they wait "
            "(OMP_WAIT_POLICY=PASSIVE) rather than spin on cores others need; it runs slower "
            "than alone and its timings are noisier"
        )
    return {}, f"mobilenets: {why}, so this runs slower than alone and its timings are noisier"


def set_threads(threads: int) -> None:
    """Compute with ``threads`` threads in this process: torch's intra-op pool and every
    runtime session opened afterwards (ONNX Runtime, OpenVINO, ExecuTorch)."""
    global _threads
    import torch

    _threads = threads
    torch.set_num_threads(threads)


def omp_threads(environ: Mapping[str, str] = os.environ) -> int | None:
    """The thread count ``OMP_NUM_THREADS`` names (its first level: ``4`` or ``4,2``), the
    count torch starts with; None where it is unset or names none."""
    first = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(first) if first.isdecimal() and 0 < len(first) < 5 and int(first) > 0 else None


def chosen_threads() -> int | None:
    """The thread count ``--threads`` chose, else ``OMP_NUM_THREADS``'s, or None (each
    runtime's default). Runtime sessions honour the variable as torch does: processes that
    share the cores (the test suite's workers, a job scheduler's slots) give every runtime
    their share, not only torch; ONNX Runtime's and OpenVINO's pools would otherwise open a
    thread per core and spin on the cores the others compute on."""
    return _threads or omp_threads()


def default_threads() -> int:
    """Threads for a runtime session: ``--threads``, else ``OMP_NUM_THREADS``, else every
    core."""
    return chosen_threads() or os.cpu_count() or 1
