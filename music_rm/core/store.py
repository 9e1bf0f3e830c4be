"""A content-addressed store kept outside DVC outputs: SQLite, one row per finished unit of work, each row
committed at once, so a run killed part-way resumes without redoing it and a rerun redoes nothing. The
generation cache and the reward-score cache are two tables of this kind. A full disk is one line naming the
store's folder (core/disk.py); the rows committed before it stay, so the rerun resumes from them."""
import json
import os
import sqlite3
from pathlib import Path

from .disk import disk_space


class Store:
    def __init__(self, path: str | os.PathLike, table: str):
        self.db_path, self.table = path, table
        with self._writing():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
            self.db.execute("pragma journal_mode=wal")
            self.db.execute(f"create table if not exists {table} (key text primary key, outputs text not null)")

    def _writing(self):
        def advice():
            rows = self.db.execute(f"select count(*) from {self.table}").fetchone()[0] if hasattr(self, "db") else 0
            return (f"free space there or move the cache (MUSIC_CACHE_DIR), and rerun: it resumes from the {rows} "
                    f"finished units of work {Path(self.db_path).name} holds")

        return disk_space(Path(self.db_path).parent, advice, kind="database")

    def get(self, key: str):
        row = self.db.execute(f"select outputs from {self.table} where key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, outputs) -> None:
        with self._writing():
            self.db.execute(f"insert or replace into {self.table} values (?, ?)", (key, json.dumps(outputs)))

    def close(self) -> None:
        self.db.close()
