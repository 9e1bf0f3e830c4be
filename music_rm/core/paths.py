"""Where the repository and the work kept outside DVC outputs live."""
import os
from pathlib import Path


def repo_root() -> Path:
    """The main repository, also when DVC runs a queued experiment in a temporary copy."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def cache_root() -> Path:
    """Work that must survive a crash but is no DVC output (generations, checkpoints): `.cache/` of the main
    repository, or MUSIC_CACHE_DIR."""
    return Path(os.environ.get("MUSIC_CACHE_DIR") or repo_root() / ".cache")


# The pipeline's folders, named once: the stage scripts' path options default to them, and
# tests/test_dvc_deps.py checks that each default is one of its stage's deps or outs in dvc.yaml.
CHECKED_PARAMS = "data/check_params/checked.txt"  # what check_params writes; every other stage depends on it
BASE_MODEL = "models/base"
REWARD_MODELS = "models/rm"            # <variant>/seed-<seed>: one folder per variant and training seed
BASE_MODEL_REPORTS = "data/base_model"
FETCH = "data/fetch"
SIMULATE = "data/simulate"
CONTRAST = "data/contrast"
TRAIN_REPORTS = "data/train"           # <variant>/seed-<seed>: metrics.json, curve.csv; <variant>/pairs: see below
EVAL = "data/eval"                     # and the judge, best_of_n, mt_bench, reward_bench folders in it
VOLUME_MATCHED = f"{CONTRAST}/volume_matched"   # seed-<seed>.jsonl: the control's draw for each training seed
PAIRS_MANIFESTS = "pairs"              # data/train/<variant>/pairs/seed-<seed>.json: what each model trains on


def seed_name(seed: int) -> str:
    """The folder (or file stem) of one training seed: seed-<seed>."""
    return f"seed-{seed}"


def reward_model(models: str | os.PathLike, variant: str, seed: int) -> Path:
    """The trained model of (variant, seed) under the parent folder `models` (models/rm by default)."""
    return Path(models) / variant / seed_name(seed)


def train_reports(reports: str | os.PathLike, variant: str, seed: int) -> Path:
    """The folder of (variant, seed)'s metrics.json, curve.csv and environment.json under `reports`."""
    return Path(reports) / variant / seed_name(seed)


def model_identity(model_dir: str | os.PathLike) -> tuple[str, int | None]:
    """(variant, seed) of a trained model folder <variant>/seed-<seed>; (folder name, None) for any other folder."""
    path = Path(model_dir)
    prefix = seed_name(0)[:-1]
    if path.name.startswith(prefix) and path.name[len(prefix):].isdigit():
        return path.parent.name, int(path.name[len(prefix):])
    return path.name, None
