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
import hashlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import msgspec

from mobilenets.catalog import DATA_SETS
from mobilenets.errors import (
    ConfigError,
    DamagedFileError,
    MobilenetsError,
    OverwriteError,
    RunLockedError,
    display,
)
from mobilenets.schema import (
    NonNegative,
    PositiveInt,
    Record,
    Text,
    decode,
    is_special_file,
    notice,
    pack_cache,
    read_bytes,
    unpack_cache,
)

T = TypeVar("T")
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
    except BaseException as err:
        tmp_path.unlink(missing_ok=True)
        raise_if_disk_full(err, path)
        raise
    _fsync_dir(path.parent)


def raise_if_disk_full(err: BaseException, path: Path) -> None:
    """A writer's failure on a full disk as the OS error it is (``ENOSPC``, one line on the
    command line): torch.save, onnx, safetensors and OpenVINO report it in their own words."""
    if isinstance(err, Exception) and not isinstance(err, OSError) and disk_full(path.parent):
        raise OSError(
            errno.ENOSPC, "no space left on the device (the previous file is intact)", str(path)
        ) from err


def disk_full(folder: str | Path, spare: int = 1 << 20) -> bool:
    """Whether the file system of ``folder`` has less than ``spare`` bytes left."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < spare


@contextlib.contextmanager
def temporary_folder(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``path`` named as our temporaries are (so one that a killed
    process left is removed by :func:`clean_orphans` on the next write of ``path``), for
    writers that make several files (OpenVINO's .xml and .bin); removed on exit."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_orphans(path.parent, path.name)
    folder = Path(
        tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=path.parent)
    )
    try:
        yield folder
    except BaseException as err:
        raise_if_disk_full(err, path)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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


def read_cache(path: str | Path, kind: type[T], key: str) -> T | None:
    """The payload of a cache written by :func:`write_cache` for ``key``, or ``None`` when there
    is none yet or it does not fit (damaged, edited, another key: said on stderr, to rebuild)."""
    path = Path(path)
    try:
        return unpack_cache(read_bytes(path, what="cache"), kind, key, path)
    except FileNotFoundError:
        return None
    except DamagedFileError as err:
        notice(f"ignoring the damaged cache {err}; computing it again")
    except OSError as err:
        notice(f"cannot read the cache {display(path)} ({display(err)}); computing it again")
    return None


def write_cache(path: str | Path, value: object, key: str) -> None:
    """Keep ``value`` at ``path`` for ``key``, atomically, with the sha256 of its bytes; a
    cache that cannot be written (a read-only home) is only not kept."""
    with contextlib.suppress(OSError):
        write_bytes_atomic(path, pack_cache(value, key))


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, in hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    write_bytes_atomic(path, text.encode("utf-8", "surrogateescape"))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (0 and below name process groups: no)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:  # alive, someone else's
        return True
    except (OSError, OverflowError):  # no such process, or no such pid
        return False
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
        pid = next((int(p) for p in reversed(parts[:-2]) if p.isdecimal()), None)
        if pid is None or (pid != os.getpid() and not pid_alive(pid)):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def check_writable_folder(
    folder: str | Path, what: str = "--out", data: Sequence[str | Path | None] = ()
) -> Path:
    """Create ``folder`` if needed and prove a file can be written there, before any work; a
    folder inside an input data folder is refused (see :func:`check_outside_data`)."""
    folder = Path(folder)
    check_outside_data(folder, data, what)
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
    if is_special_file(path):
        raise ConfigError(f"{display(path)} is not a regular file (a FIFO or device), not {what}")
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


#: Files a format writes beside the one it is named by (OpenVINO's IR: FILE.xml and FILE.bin).
COMPANIONS = {".xml": (".bin",)}


def written_files(path: str | Path) -> list[Path]:
    """The file ``path`` and the companions its format writes (or reads) beside it."""
    path = Path(path)
    return [path, *(path.with_suffix(s) for s in COMPANIONS.get(path.suffix, ()))]


def _data_splits(spec: str | Path | None) -> list[Path]:
    """The split folders (``train/``, ``val/``) of the image folder a data spec reads, where
    every file below a class folder is data; none for the embedded sets and for what is not a
    data folder (its own error comes later)."""
    if spec is None or str(spec).partition(":")[0] in DATA_SETS:
        return []
    folder = Path(spec).expanduser()
    return [(folder / s).resolve() for s in ("train", "val") if (folder / s).is_dir()]


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder)
    except (OSError, RuntimeError):
        return False


def check_output_path(
    out: str | Path,
    *inputs: str | Path | None,
    flag: str = "--out",
    data: Sequence[str | Path | None] = (),
    suffixes: Sequence[str] | None = None,
) -> Path:
    """The one output policy of every command that writes a file; returns ``out`` as a Path.

    Refused before any work: a folder, a FIFO or device (opening it would wait), a suffix not in
    ``suffixes``, any file the output writes (``out`` and its companions, see
    :data:`COMPANIONS`) that is one of the ``inputs`` or their companions, and any such file
    inside a ``data`` folder (it would become data: an image in a class folder)."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{flag} {display(out)} is a folder; give a file name")
    if is_special_file(out):
        raise ConfigError(f"{flag} {display(out)} is not a regular file (a FIFO or device)")
    if suffixes is not None and out.suffix not in suffixes:
        raise ConfigError(
            f"{flag} {display(out)} must end in {' or '.join(suffixes)} (the format it writes)"
        )
    sources = [s for source in inputs if source is not None for s in written_files(source)]
    for target in written_files(out):
        for source in sources:
            if _same_file(target, source):
                also = "" if target == out else f" (it writes {display(target)} beside it)"
                raise OverwriteError(
                    f"{flag} {display(out)}{also} is the input file {display(source)}: writing "
                    "it would destroy the input; choose another output path"
                )
        check_outside_data(target, data, flag)
    return out


def check_outside_data(
    path: str | Path, data: Sequence[str | Path | None], flag: str = "--out"
) -> None:
    """Refuse an output (a file or a run folder) inside an input data folder's splits."""
    for spec in data:
        for split in _data_splits(spec):
            if _inside(Path(path), split):
                raise OverwriteError(
                    f"{flag} {display(path)} is inside the data folder {display(split)}: what "
                    "is written there would become data (an image in a class folder); write "
                    "outside it"
                )


class LockHolder(Record):
    """What a run lock says: who holds the folder and since when."""

    pid: PositiveInt
    host: Text
    since: NonNegative


class RunLock:
    """A lock file (pid, host, start time) that keeps a second writer out of a run folder.

    The lock appears whole or not at all (written to a temporary, then hard-linked into place,
    which fails if a lock is there). A lock held by a live process on this host is refused,
    naming it; a lock left by a dead process is taken over. A lock from another host cannot be
    checked and is refused too, as is a damaged one, with the command to remove it when that
    run is known to be gone.
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.held = False

    def _holder(self) -> LockHolder | None:
        """The lock's holder; ``None`` when there is no lock; :class:`DamagedFileError` for a
        lock that is not one of ours."""
        try:
            data = read_bytes(self.path, limit=4096, what="run lock")
        except FileNotFoundError:
            return None
        except OSError as err:
            raise DamagedFileError(f"{display(self.path)}: {display(err)}") from None
        return decode(data, LockHolder, self.path, DamagedFileError)

    def _create(self) -> bool:
        """Put our lock in place whole; ``False`` when a lock is there already."""
        me = LockHolder(os.getpid(), socket.gethostname(), time.time())
        fd, tmp = tempfile.mkstemp(
            prefix=f"{LOCK_NAME}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=self.path.parent
        )
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(msgspec.json.encode(me))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
        finally:
            os.unlink(tmp)
        return True

    def acquire(self) -> RunLock:
        for _ in range(3):
            if self._create():
                self.held = True
                return self
            try:
                holder = self._holder()
            except DamagedFileError as err:
                raise RunLockedError(
                    f"the run lock is damaged ({err}); if no run is using "
                    f"{display(self.path.parent)}, delete {display(self.path)}"
                ) from None
            if holder is None:  # released in between
                continue
            if holder.pid == os.getpid() and holder.host == socket.gethostname():
                raise RunLockedError(
                    f"{display(self.path.parent)} is already in use by this process"
                )
            if self._alive(holder):
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.since))
                raise RunLockedError(
                    f"{display(self.path.parent)} is in use by another run (pid "
                    f"{holder.pid} on {display(holder.host)}, since {since}); wait for "
                    f"it to finish or choose another --out (if that run is gone, delete "
                    f"{display(self.path)})"
                )
            self.path.unlink(missing_ok=True)  # stale: its process is gone
        raise RunLockedError(
            f"could not lock {display(self.path.parent)}: another run races for it"
        )

    @staticmethod
    def _alive(holder: LockHolder) -> bool:
        if holder.host != socket.gethostname():
            return True
        return pid_alive(holder.pid)

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(MobilenetsError):
                holder = self._holder()
                if holder is not None and holder.pid == os.getpid():
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
