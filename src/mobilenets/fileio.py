"""Files that are never lost: atomic writes, run-folder locks and output-path checks.

Every file the project writes goes through :func:`atomic_path`: a unique temporary file in the
target's folder (``mkstemp``), flushed to disk, then ``os.replace``d over the target, so a reader
sees the old file or the new one, never a torn one, and two writers never share a temporary.
Temporaries are named ``.<target>.<pid>.<random>.mobilenets-tmp``; one left by a killed process
is removed by :func:`clean_orphans` on the next run.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mobilenets.errors import ConfigError, OverwriteError, RunLockedError, display

TMP_SUFFIX = ".mobilenets-tmp"
LOCK_NAME = ".lock"


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The caller (``torch.save``, ``safetensors``, ``onnx.save``, ``savefig``...) writes the whole
    file to the yielded path; on any error the temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    clean_orphans(path.parent, path.name)  # what a killed writer of this file left behind
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def cache_dir() -> Path:
    """Where the package keeps what it can compute again: ``$MOBILENETS_CACHE`` or
    ``~/.cache/mobilenets`` (created on first use)."""
    folder = Path(os.environ.get("MOBILENETS_CACHE", Path.home() / ".cache" / "mobilenets"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    write_bytes_atomic(path, text.encode("utf-8", "surrogateescape"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def clean_orphans(folder: str | Path, target: str | None = None) -> list[Path]:
    """Remove temporaries of our naming (of ``target`` only, when given) whose writing process
    is gone; return them."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(f".{glob.escape(target) + '.' if target else ''}*{TMP_SUFFIX}"):
        parts = tmp.name.split(".")
        pid = next((int(p) for p in reversed(parts[:-2]) if p.isdigit()), None)
        if pid is None or (pid != os.getpid() and not _pid_alive(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def check_writable_folder(folder: str | Path, what: str = "--out") -> Path:
    """Create ``folder`` if needed and prove a file can be written there, before any work."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{what} {display(folder)} is a file; it must be a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / ".write-test") as probe:
            probe.write_bytes(b"")
        (folder / ".write-test").unlink()
    except OSError as err:
        raise ConfigError(
            f"{what} {display(folder)} cannot be written: {err.strerror or err}"
        ) from err
    return folder


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path, or the OS error for a missing file or a folder, saying ``what`` was
    expected (the CLI prints it as one line)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"is a folder, not {what}", str(path))
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, f"no such file (expected {what})", str(path))
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        return False
    return a.resolve() == b.resolve()


def check_output_path(out: str | Path, *inputs: str | Path | None, flag: str = "--out") -> Path:
    """Refuse an output that is one of the inputs (or a folder); return it as a Path."""
    out = Path(out)
    for source in inputs:
        if source is not None and _same_file(out, Path(source)):
            raise OverwriteError(
                f"{flag} {display(out)} is the input file {display(source)}: writing it would "
                "destroy the input; choose another output path"
            )
    if out.is_dir():
        raise ConfigError(f"{flag} {display(out)} is a folder; give a file name")
    return out


class RunLock:
    """A lock file (pid, host, start time) that keeps a second writer out of a run folder.

    A lock held by a live process on this host is refused, naming it; a lock left by a dead
    process is taken over. A lock from another host cannot be checked and is refused too, with
    the command to remove it when that run is known to be gone.
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.held = False

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self) -> RunLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and holder.get("pid") == os.getpid():
                    raise RunLockedError(
                        f"{display(self.path.parent)} is already in use by this process"
                    ) from None
                if holder is not None and self._alive(holder):
                    since = time.strftime(
                        "%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0))
                    )
                    raise RunLockedError(
                        f"{display(self.path.parent)} is in use by another run (pid "
                        f"{holder.get('pid')} on {holder.get('host')}, since {since}); wait for "
                        f"it to finish or choose another --out (if that run is gone, delete "
                        f"{display(self.path)})"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise RunLockedError(
            f"could not lock {display(self.path.parent)}: another run races for it"
        )

    @staticmethod
    def _alive(holder: dict) -> bool:
        if holder.get("host") != socket.gethostname():
            return True
        pid = holder.get("pid")
        return isinstance(pid, int) and _pid_alive(pid)

    def release(self) -> None:
        if self.held:
            holder = self._holder()
            if holder is not None and holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def nonfinite_tensors(state: dict) -> list[str]:
    """Names of the floating-point tensors of a state dict holding NaN or ±inf: such weights
    are never written over good ones, and never loaded."""
    import torch

    return [
        name
        for name, value in state.items()
        if isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]


def new_figure(**kwargs: object) -> object:
    """A matplotlib ``Figure`` that is not registered with pyplot: library code never touches
    the caller's backend or global figure list (a notebook keeps its own)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig: object, path: str | Path, dpi: int = 110) -> None:
    """Write a figure as PNG, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
