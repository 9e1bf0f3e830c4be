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
BASE_MODEL = "models/base"
REWARD_MODELS = "models/rm"            # one folder per variant
BASE_MODEL_REPORTS = "data/base_model"
FETCH = "data/fetch"
SIMULATE = "data/simulate"
CONTRAST = "data/contrast"
TRAIN_REPORTS = "data/train"           # one folder per variant: metrics.json, curve.csv
EVAL = "data/eval"                     # and the judge, best_of_n, mt_bench, reward_bench folders in it
