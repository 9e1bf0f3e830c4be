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
