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

Under DVC (which names the stage it runs in DVC_STAGE), DVC removes a stage's outputs before it runs the command.
So that a run that fails leaves the earlier outputs in place: each committed run also puts the stage's `cache:
false` outputs into DVC's local cache (as DVC's run cache does for the metrics of the stages it caches), and a
stage that fails puts back, with `restore_removed_outputs`, every output of its dvc.lock entry that DVC removed
and its cache holds (core/cli.py calls it for every stage script). Params are refused before DVC removes
anything: by the check_params stage, which every stage depends on (docs/pipeline.md).
"""
import contextlib
import functools
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

from .disk import disk_space, folder_size, shown

PREFIX = ".music-rm-outputs."
COMMITTED = "COMMITTED"
log = logging.getLogger(__name__)


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
    keep_uncached_outputs()


def _dvc_stage_name() -> str | None:
    """The DVC stage this process runs (DVC_STAGE), in the process that speaks for it (rank 0 of a launch)."""
    return os.environ.get("DVC_STAGE") if os.environ.get("RANK", "0") == "0" else None


@contextlib.contextmanager
def _copy_links(repo):
    """DVC's checkouts and commits as plain copies (an uncached output stays an ordinary, writable file), as DVC's
    run cache does (dvc/stage/cache.py, StageCache._cache_type_copy)."""
    caches = (repo.cache.local, repo.cache.legacy)
    saved = [c.cache_types for c in caches]
    for c in caches:
        c.cache_types = ["copy"]
    try:
        yield
    finally:
        for c, types in zip(caches, saved):
            c.cache_types = types


def _stage_with_outs(repo, cmd: str, outs: list[str]):
    """A stand-in for a stage with these outputs, each cached (DVC commits and checks out only cached outputs). Its
    outputs add nothing to .gitignore, as a cached output's save does: the real ones are `cache: false`, tracked by
    git (ignored, an experiment would not carry its metrics)."""
    from dvc.stage import PipelineStage, create_stage

    stage = create_stage(PipelineStage, repo=repo, path="dvc.yaml", cmd=cmd, outs=outs)
    for out in stage.outs:
        out.ignore = lambda: None
    return stage


def keep_uncached_outputs() -> None:
    """Under DVC: the running stage's `cache: false` outputs, copied into DVC's local cache (no-op elsewhere)."""
    name = _dvc_stage_name()
    if not name:
        return
    from dvc.repo import Repo

    try:
        with Repo(".") as repo:
            stage = next(iter(repo.stage.collect(name)))
            uncached = [out.def_path for out in stage.outs if not out.use_cache and out.exists]
            with _copy_links(repo):
                for out in _stage_with_outs(repo, stage.cmd, uncached).outs if uncached else []:
                    out.save()
                    out.commit(relink=False)
    except Exception as e:  # a safety net only: the stage's outputs are committed whatever happens here
        log.warning("%s: its cache: false outputs could not be copied into DVC's cache (%s: %s); a later failed run "
                    "cannot put them back", name, type(e).__name__, e)


def restore_removed_outputs() -> list[str]:
    """Under DVC, after the stage failed: every output its dvc.lock entry records that is missing (DVC removed it
    before running the stage) and that DVC's cache holds, checked out again; returns their paths. Those it cannot
    put back are logged."""
    import yaml

    name = _dvc_stage_name()
    try:
        lock = (yaml.safe_load(Path("dvc.lock").read_text(encoding="utf-8")) or {})["stages"][name] if name else None
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return []
    missing = [out["path"] for out in (lock or {}).get("outs", []) if not os.path.lexists(out["path"])]
    if not missing:
        return []
    from dvc.repo import Repo
    from dvc.stage.loader import StageLoader

    restored, lost = [], []
    try:
        with Repo(".") as repo:
            declared = {out.def_path: out.use_cache for out in next(iter(repo.stage.collect(name))).outs}
            stage = _stage_with_outs(repo, lock["cmd"], missing)
            StageLoader.fill_from_lock(stage, lock)
            for out in stage.outs:
                if not out.hash_info or out.changed_cache():
                    lost.append(out.def_path)
                    continue
                with _copy_links(repo) if not declared.get(out.def_path, True) else contextlib.nullcontext():
                    out.checkout()
                restored.append(out.def_path)
    except Exception as e:  # never in the way of the stage's own error, which follows
        log.warning("%s: the earlier outputs DVC removed could not be put back (%s: %s)", name, type(e).__name__, e)
    if restored:
        log.debug("%s: put back the earlier outputs DVC removed before this run: %s", name, ", ".join(restored))
    if lost:
        log.warning("%s: DVC removed these earlier outputs before this run and its cache does not hold them: %s",
                    name, ", ".join(lost))
    return restored
