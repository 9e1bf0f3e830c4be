"""Files in and out: JSON lines, JSON, and atomic writes so no stage leaves a half-written output."""
import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path` (file or folder); it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_jsonl(path, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(_dumps(row) + "\n")
            n += 1
    return n


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=2) + "\n", encoding="utf-8")


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


class InputError(ValueError):
    """Bad input, located by file, row (1-based) and field."""

    def __init__(self, file, row: int | None, field: str | None, message: str):
        self.file, self.row, self.field, self.reason = str(file), row, field, message
        where = self.file + (f": row {row}" if row is not None else "") + (f": field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")


def iter_jsonl(path) -> Iterator[tuple[int, dict | InputError]]:
    """(line number, row) for each non-blank line; a line that is not a JSON object yields an InputError
    in its place, so a caller can stop there or count it and go on."""
    with open(path, "rb") as f:
        for row_no, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield row_no, InputError(path, row_no, None, f"invalid UTF-8 ({e.reason} at byte {e.start})")
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield row_no, InputError(path, row_no, None, f"broken JSON line ({e.msg}, column {e.colno})")
                continue
            if not isinstance(row, dict):
                row = InputError(path, row_no, None, f"expected a JSON object, got {type(row).__name__}")
            yield row_no, row


def read_jsonl(path) -> list[dict]:
    rows = []
    for _, row in iter_jsonl(path):
        if isinstance(row, InputError):
            raise row
        rows.append(row)
    return rows


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
