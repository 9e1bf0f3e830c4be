"""The trained models' folders hold the current variants and seeds only: what a removed one left is removed.

DVC leaves the outputs of a stage that is gone (a variant removed from train.variants, a seed from train.seeds)
where they were, and a stage that depends on the whole of models/rm or data/train (eval and the suites, dvc.yaml)
would hash them in: its dvc.lock entry would name folders that no clone has and that it did not read. So such a
stage first removes, under those folders, every entry of no current (variant, seed) that holds only outputs
dvc.lock records (DVC's cache keeps them: a checkout of a commit that trains them brings them back), one log line
each; anything else there (a model copied in by hand) stops the stage with one line naming it.
"""
import logging
import os
import shutil
from pathlib import Path

import yaml

from ..core import paths
from ..core.errors import InputError
from ..core.outputs import PREFIX
from ..core.params import TrainParams
from ..core.tracking import LOG_FILE

UNHASHED = {".gitignore", LOG_FILE}  # DVC's own ignore lists, and the stage logs .dvcignore leaves out
log = logging.getLogger(__name__)


def _absolute(path) -> Path:
    return Path(os.path.abspath(path))  # not resolved: a models folder may hold links to models elsewhere


def recorded_outputs(lock: Path) -> set[Path]:
    """Every output path dvc.lock records, for any stage, the ones of stages no longer in dvc.yaml included."""
    if not lock.is_file():
        return set()
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    return {_absolute(lock.parent / out["path"]) for stage in stages.values() for out in stage.get("outs", [])}


def _prune(folder: Path, keep: set[Path], recorded: set[Path], where: str) -> list[Path]:
    removed = []
    for entry in sorted(folder.iterdir()):
        if entry.name in UNHASHED or entry.name.startswith(PREFIX) or entry in keep:
            continue
        if any(entry in k.parents for k in keep):
            removed += _prune(entry, keep, recorded, where)
            continue
        files = [f for f in entry.rglob("*") if not f.is_dir()] if entry.is_dir() and not entry.is_symlink() else [entry]
        if not all(f.name in UNHASHED or f in recorded or recorded & set(f.parents) for f in files):
            raise InputError(os.path.relpath(entry), None, None,
                             f"not a model or report of {where}, and no output dvc.lock records; a stage that depends "
                             f"on all of {os.path.relpath(folder)} would hash it in: move it out")
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        log.info("removed %s: an output of a variant or seed no longer in %s", os.path.relpath(entry), where)
        removed.append(entry)
    return removed


def remove_stale(train: TrainParams, models=None, reports=None) -> list[Path]:
    """Remove from `models` (models/rm) and `reports` (data/train) what no (variant, seed) of `train` owns and
    dvc.lock records as an output; refuse anything else there. Returns what was removed."""
    where = f"train.variants × train.seeds ({', '.join(train.variants)} × {', '.join(map(str, train.seeds))})"
    recorded = recorded_outputs(paths.repo_root() / "dvc.lock")
    removed = []
    for folder, owned in ((models, lambda v, s: [paths.reward_model(models, v, s)]),
                          (reports, lambda v, s: [paths.train_reports(reports, v, s),
                                                  Path(reports) / v / paths.PAIRS_MANIFESTS])):
        if folder is not None and Path(folder).is_dir():
            keep = {_absolute(p) for v in train.variants for s in train.seeds for p in owned(v, s)}
            removed += _prune(_absolute(folder), keep, recorded, where)
    return removed
