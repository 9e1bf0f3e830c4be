"""A full disk in one line: the folder that could not be written, the space left on its disk, and what a rerun
keeps, instead of the traceback of an OSError 28, a SafetensorError or SQLite's "database or disk is full".

`disk_space(folder, advice)` turns a disk-full error raised in its block into `DiskFull`, a StageFailure, which a
stage prints as its one error line (core/cli.py). The writers wrap what they write: a stage's outputs
(core/outputs.py), the SQLite stores (core/store.py: the generation and reward-score caches) and training
checkpoints (reward/train.py).
"""
import contextlib
import errno
import logging
import os
from pathlib import Path

from .errors import StageFailure

# How the writers say a disk is full: Python's OSError 28 (ENOSPC) and safetensors' Rust I/O error; SQLite's SQLITE_FULL
FILE_FULL = ("No space left on device", "os error 28", "StorageFull")
DATABASE_FULL = "database or disk is full"
# torch.save's stream writer gives no errno ("basic_ios::clear: iostream error", then "unexpected pos"): its failure
# counts as a full disk when the folder's disk has less than ALMOST_FULL left afterwards
TORCH_WRITE_FAILED = ("iostream error", "PytorchStreamWriter failed", "file write failed", "unexpected pos")
ALMOST_FULL = 16 * 2**20
log = logging.getLogger(__name__)


class DiskFull(StageFailure):
    """No space left where a stage writes; the message names the folder, the space left there and what to do."""

    def __init__(self, folder, advice: str, written: int | None = None):
        self.folder = Path(folder)
        free, total = space(folder)
        left = f"{size(free)} free of {size(total)}"
        state = f"after this run wrote {size(written)} there (removed; {left} now)" if written else f"({left})"
        super().__init__(f"{shown(folder)}: disk full {state}: {advice}")


def space(folder) -> tuple[int, int]:
    """(bytes free to this user, bytes in all) on the disk that holds `folder` (or its nearest existing parent)."""
    path = Path(os.path.abspath(folder))
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = os.statvfs(path)
    return usage.f_bavail * usage.f_frsize, usage.f_blocks * usage.f_frsize


def size(n: int) -> str:
    """Bytes as people read them: 0 B, 44.0 KiB, 1.6 GiB."""
    if n < 1024:
        return f"{n} B"
    units = ("KiB", "MiB", "GiB")
    power = min(len(units), max(1, (n.bit_length() - 1) // 10))
    return f"{n / 1024 ** power:.1f} {units[power - 1]}"


def shown(folder) -> str:
    """`folder` relative to the working directory when it is inside it (data/fetch), else absolute."""
    path = Path(os.path.abspath(folder))
    return path.relative_to(Path.cwd()).as_posix() if path.is_relative_to(Path.cwd()) else path.as_posix()


def _chain(error: BaseException):
    """`error` and the errors it was raised from or while handling (as a traceback shows them)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ if error.__cause__ is not None else \
            None if error.__suppress_context__ else error.__context__


def disk_full_kind(error: BaseException, folder) -> str | None:
    """"database" when `error` is SQLite's (or SQLAlchemy's) "database or disk is full", "file" when it is another
    writer's full disk (a torch.save failure: when the disk of `folder` is then almost full), else None."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "file"
    text = str(error)
    if DATABASE_FULL in text:
        return "database"
    if any(sign in text for sign in FILE_FULL) or \
            any(sign in text for sign in TORCH_WRITE_FAILED) and space(folder)[0] < ALMOST_FULL:
        return "file"
    return None


@contextlib.contextmanager
def disk_space(folder, advice, on_full=None, kind: str | None = None):
    """A disk-full error in the block becomes DiskFull naming `folder` (or the folder of the file the error names,
    when that is elsewhere); `advice` (or what `advice()` returns) says what to do and what a rerun keeps.
    `on_full()` runs first: it frees what the block left half-written, so the space reported is what is left
    without it, and returns the bytes that held (or None).

    The error that counts is the one raised first (a full disk often fails the cleanup that follows too:
    the MLflow run's end, the log file): with `kind` ("file" or "database") the block claims only that kind, and
    leaves the others to the block around it that writes there. A DiskFull said inside the block is raised as it
    is, also when cleanup failed after it."""
    try:
        yield
    except Exception as e:
        chain = list(_chain(e))
        said = [x for x in chain if isinstance(x, DiskFull)]
        if said:
            raise said[-1] from None
        full = [(x, k) for x in chain if (k := disk_full_kind(x, folder))]
        if not full or kind not in (None, full[-1][1]):
            raise
        found = full[-1][0]
        log.debug("disk full: %s: %s", type(found).__name__, found, exc_info=e)  # the traceback, with -v
        written = on_full() if on_full is not None else None
        where = Path(os.path.abspath(folder))
        named = getattr(found, "filename", None)
        if isinstance(named, str) and not Path(os.path.abspath(named)).is_relative_to(where):
            where = Path(named).parent
        raise DiskFull(where, advice() if callable(advice) else advice, written) from None


def folder_size(folder) -> int:
    """Bytes of the files under `folder`."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())
