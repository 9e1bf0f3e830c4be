"""Files in and out: JSON lines, JSON, atomic writes (no stage leaves a half-written output), content hashes."""
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import InputError


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


def readable_files(folder) -> None:
    """Give every file in `folder` the mode a plain new file gets (0644 under umask 022): some writers (the
    safetensors weights) leave 0600, which other users of a shared cache or a DVC remote cannot read."""
    mask = os.umask(0)
    os.umask(mask)
    for path in Path(folder).rglob("*"):
        if path.is_file():
            path.chmod(0o666 & ~mask)


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


def open_bytes(path):
    """A file for reading bytes, decompressed when its name ends in .gz."""
    import gzip

    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def iter_jsonl(path) -> Iterator[tuple[int, dict | InputError]]:
    """(line number, row) for each non-blank line of a JSON-lines file (gzipped when named .gz; a UTF-8 byte
    order mark is ignored); a line that is not a JSON object yields an InputError in its place, so a caller
    can stop there or count it and go on."""
    with open_bytes(path) as f:
        for row_no, raw in enumerate(f, start=1):
            if row_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
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


def file_digest(path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_digest(folder) -> str:
    """sha256 over every file of a folder: relative paths and contents, in path order."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(bytes.fromhex(file_digest(path)))
    return digest.hexdigest()


def flatten(tree, prefix: str = "") -> dict:
    """{dotted key: value} of the leaves of nested dicts (`{"a": {"b": 1}}` → `{"a.b": 1}`): params, metrics."""
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    return {k: v for key, value in tree.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
