"""A stage's outputs committed together or not at all.

`committed_outputs(*folders)` yields, for each output folder, a staged copy inside one temporary folder beside
them (`.music-rm-outputs.<host>.<pid>.<random>` in the folders' nearest common parent). The stage writes
everything there; when its block succeeds, the list of folders is written to a `COMMITTED` file in the staging
folder (the commit point) and each entry written at the top level of a staged folder replaces its namesake
(a file, or a folder whole); entries the stage did not write stay as they were. A run killed before the commit
point leaves the old outputs untouched; one killed while entries move is rolled forward by the next stage that
starts there, so the outputs are never half old, half new. At start, staging folders whose process is gone
(same host, pid not alive) are rolled forward if committed, otherwise removed. A full disk before the commit point
removes the staging folder and is one line (core/disk.py): the outputs are as they were.
"""
import contextlib
import functools
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

from .disk import disk_space, folder_size, shown

PREFIX = ".music-rm-outputs."
COMMITTED = "COMMITTED"


def process_alive(host: str, pid: int) -> bool:
    """Whether process `pid` of `host` still runs (a process of another host is taken as alive)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _owner(staging: Path) -> tuple[str, int] | None:
    host, _, rest = staging.name[len(PREFIX):].rpartition(".")[0].rpartition(".")
    try:
        return host, int(rest)
    except ValueError:
        return None


def _replace(source: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    os.replace(source, target)


def _move_in(staging: Path, folders: list[str]) -> None:
    for relative in folders:
        staged, target = staging / relative, staging.parent / relative
        target.mkdir(parents=True, exist_ok=True)
        for entry in sorted(staged.iterdir()) if staged.is_dir() else []:
            _replace(entry, target / entry.name)
    shutil.rmtree(staging)


def recover(parent: str | os.PathLike) -> list[Path]:
    """Finish or remove the staging folders in `parent` that killed runs left; returns the ones handled."""
    handled = []
    for staging in sorted(Path(parent).glob(PREFIX + "*")):
        owner = _owner(staging)
        if not staging.is_dir() or (owner is not None and process_alive(*owner)):
            continue
        marker = staging / COMMITTED
        if marker.is_file():
            _move_in(staging, json.loads(marker.read_text(encoding="utf-8")))
        else:
            shutil.rmtree(staging)
        handled.append(staging)
    return handled


@contextlib.contextmanager
def committed_outputs(*folders: str | os.PathLike) -> Iterator[Path | tuple[Path, ...]]:
    """Staged copies of `folders` (one path, or a tuple for several) whose top-level entries replace theirs
    together when the block succeeds; see the module docstring."""
    folders = [Path(os.path.abspath(f)) for f in folders]
    parent = Path(os.path.commonpath([f.parent for f in folders]))
    parent.mkdir(parents=True, exist_ok=True)
    recover(parent)
    relative = [f.relative_to(parent).as_posix() for f in folders]
    staging = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{socket.gethostname()}.{os.getpid()}.", dir=parent))
    discard = functools.partial(shutil.rmtree, staging, ignore_errors=True)

    def discard_full() -> int:
        written = folder_size(staging)
        discard()
        return written

    try:
        kept = ", ".join(shown(f) for f in folders)
        with disk_space(parent, f"free space there and rerun ({kept}: as before this run)", on_full=discard_full,
                        kind="file"):
            staged = [staging / r for r in relative]
            for folder in staged:
                folder.mkdir(parents=True, exist_ok=True)
            yield staged[0] if len(staged) == 1 else tuple(staged)
            marker = staging / COMMITTED
            tmp = marker.with_suffix(".tmp")
            tmp.write_text(json.dumps(relative), encoding="utf-8")
            os.replace(tmp, marker)
    except BaseException:
        discard()
        raise
    _move_in(staging, relative)
