"""A content-addressed store kept outside DVC outputs: SQLite, one row per finished unit of work, each row
committed at once, so a run killed part-way resumes without redoing it and a rerun redoes nothing. The
generation cache and the reward-score cache are two tables of this kind."""
import json
import os
import sqlite3
from pathlib import Path


class Store:
    def __init__(self, path: str | os.PathLike, table: str):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db_path, self.table = path, table
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.db.execute("pragma journal_mode=wal")
        self.db.execute(f"create table if not exists {table} (key text primary key, outputs text not null)")

    def get(self, key: str):
        row = self.db.execute(f"select outputs from {self.table} where key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, outputs) -> None:
        self.db.execute(f"insert or replace into {self.table} values (?, ?)", (key, json.dumps(outputs)))

    def close(self) -> None:
        self.db.close()
