"""The generation cache: every generation unit's completions by a key of the backend's identity, the unit's
requests and its seed (core/store.py), in `.cache/generation.sqlite` (MUSIC_CACHE_DIR moves it)."""
from pathlib import Path

from ..core.paths import cache_root
from ..core.store import Store


def default_path() -> Path:
    return cache_root() / "generation.sqlite"


class GenerationCache(Store):
    def __init__(self, path):
        super().__init__(path, "generations")
