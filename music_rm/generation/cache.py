"""A content-addressed store of generations, kept outside DVC outputs (SQLite, one row per unit of work).

Each finished unit is committed at once, so a run killed part-way resumes without redoing it, and a
rerun with unchanged inputs makes no model calls at all.
"""
import json
import os
import sqlite3
from pathlib import Path

from ..core.paths import cache_root


def default_path() -> Path:
    return cache_root() / "generation.sqlite"


class GenerationCache:
    def __init__(self, path: str | os.PathLike):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.db.execute("pragma journal_mode=wal")
        self.db.execute("create table if not exists generations (key text primary key, outputs text not null)")

    def get(self, key: str) -> list[str] | None:
        row = self.db.execute("select outputs from generations where key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, outputs: list[str]) -> None:
        self.db.execute("insert or replace into generations values (?, ?)", (key, json.dumps(outputs)))

    def close(self) -> None:
        self.db.close()
