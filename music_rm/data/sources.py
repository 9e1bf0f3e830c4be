"""Preference data in: the embedded seed set, a local file, or a Hugging Face dataset; one schema out."""
import json
import os
from collections import Counter
from importlib import resources
from pathlib import Path

from ..core.errors import InputError
from ..core.io import iter_jsonl, open_bytes
from ..core.params import FetchParams
from .conversation import SchemaError, pair_id, prompt_hash, validate_pair
from .formats import FORMATS, convert, describe, detect, drop_nulls

EMBEDDED_SEEDS = resources.files("music_rm.data") / "seeds" / "embedded.jsonl"


SUFFIXES = (".jsonl", ".json", ".parquet")


def file_kind(path: Path) -> str:
    """.jsonl, .json or .parquet: the suffix under an optional .gz."""
    name = path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name
    return Path(name).suffix


def read_rows(path: str | Path) -> list[tuple[int, object]]:
    """(row number, raw row) of a .jsonl, .json (a list of objects) or .parquet file, each optionally gzipped
    (.gz); in a .jsonl file the row number is the line number, and a line that is not a JSON object is an
    InputError in its place. A file that is not what its name says is one InputError."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, None, None, f"is a folder ({folder_contents(path)}); name a .jsonl, .json or "
                                           ".parquet file in it, or a folder written by datasets' save_to_disk")
    if not path.is_file():
        raise InputError(path, None, None, "no such file")
    kind = file_kind(path)
    if kind not in SUFFIXES:
        raise InputError(path, None, None, "unsupported file type (use .jsonl, .json or .parquet, each optionally .gz)")
    try:
        with open_bytes(path) as f:
            head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
            if kind == ".jsonl" and head.startswith(b"["):
                raise InputError(path, None, None, "holds a JSON array, not JSON lines (one object per line): "
                                                   "name it .json")
            if kind == ".json":
                rows = _json_rows(path, head + f.read())
            elif kind == ".parquet":
                rows = _parquet_rows(path, head + f.read())
        if kind == ".jsonl":
            rows = list(iter_jsonl(path))
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise InputError(path, None, None, f"cannot be read as {path.name.split('.', 1)[-1]} ({e})") from None
    if not rows:
        raise InputError(path, None, None, "empty file: no rows")
    return rows


def _json_rows(path: Path, data: bytes) -> list[tuple[int, object]]:
    try:
        rows = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(path, None, None, f"not a JSON file ({e})") from None
    if not isinstance(rows, list):
        raise InputError(path, None, None, "expected a JSON list of row objects")
    return list(enumerate(rows, start=1))


def _parquet_rows(path: Path, data: bytes) -> list[tuple[int, object]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as e:
        raise InputError(path, None, None, f"not a Parquet file ({e})") from None
    return list(enumerate(table.to_pylist(), start=1))


def folder_contents(folder: Path, shown: int = 4) -> str:
    """What a folder holds, for an error message: its first few names and how many more."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return "empty"
    return "holds " + ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def is_saved_dataset(folder: Path) -> bool:
    """Whether `folder` was written by datasets' save_to_disk (a Dataset or a DatasetDict)."""
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def read_saved_dataset(folder: str | Path, split: str) -> tuple[list[tuple[int, object]], str | None]:
    """(row number, row) of a save_to_disk folder, and the split taken: `split` of a DatasetDict (None for a
    plain Dataset). A folder that cannot be loaded is one InputError naming what it holds."""
    import datasets

    folder = Path(folder)
    try:
        dataset = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError, OSError, KeyError) as e:
        raise InputError(folder, None, None, f"not a readable save_to_disk folder ({folder_contents(folder)}; "
                                             f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    taken = None
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise InputError(folder, None, None, f"a save_to_disk DatasetDict without split {split!r} "
                                                 f"(fetch.hf_split); its splits: {sorted(dataset)}")
        dataset, taken = dataset[split], split
    rows = list(enumerate(dataset.to_list(), start=1))
    if not rows:
        raise InputError(folder, None, None, "a save_to_disk folder with no rows" + (f" in split {taken!r}" if taken else ""))
    return rows, taken


def read_hf(dataset: str, revision: str, split: str, limit: int | None) -> tuple[list[dict], str]:
    """Rows of a Hub dataset (or a local dataset folder) and the commit the Hub resolved."""
    import datasets

    split_spec = f"{split}[:{limit}]" if limit else split
    try:
        loaded = datasets.load_dataset(dataset, revision=revision, split=split_spec)
    except Exception as e:  # a local folder datasets cannot read; a Hub failure keeps its own message
        if not os.path.isdir(dataset):
            raise
        raise InputError(dataset, None, None, f"datasets cannot load this folder ({folder_contents(Path(dataset))}): "
                                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    rows = list(enumerate(loaded.to_list(), start=1))
    if os.path.isdir(dataset):
        resolved = "local:" + os.path.abspath(dataset)
    else:
        from huggingface_hub import HfApi

        resolved = HfApi().dataset_info(dataset, revision=revision).sha
    return rows, resolved


def normalize(raw: dict, fmt: str, default_source: str, max_chars: int | None = None) -> dict:
    """One raw row of format `fmt` (data/formats.py) as {id, source, chosen, rejected}; raises SchemaError naming
    the field."""
    if not isinstance(raw, dict):
        raise SchemaError("row", f"expected an object, got {type(raw).__name__}")
    raw = drop_nulls(raw)
    row = convert(raw, fmt)
    validate_pair(row, max_chars)
    if "id" in raw and not isinstance(raw["id"], (str, int)):
        raise SchemaError("id", f"expected a string or integer, got {type(raw['id']).__name__}")
    source = raw.get("source") or default_source
    if not isinstance(source, str):
        raise SchemaError("source", f"expected a string, got {type(source).__name__}")
    return {"id": pair_id(row["chosen"], row["rejected"]), "source": source, **row}


def resolve_format(fmt: str, raw_rows, origin) -> str:
    """`fmt`, or with `auto` the format of the first row that is an object (data/formats.py)."""
    if fmt != "auto":
        return fmt
    row_no, first = next(((n, r) for n, r in raw_rows if isinstance(r, dict)), (None, None))
    if first is None:
        return "schema"  # no row is an object: each is reported as it is, whatever the format
    detected = detect(first)
    if detected is None:
        raise InputError(origin, row_no, None, f"matches no known preference format (tried {', '.join(FORMATS)}); "
                                               f"its first row looks like {describe(first)}")
    return detected


def is_test(row: dict, test_fraction: float) -> bool:
    """Split by a hash of the prompt, so a prompt never lands in both splits."""
    return int(prompt_hash(row["chosen"])[:8], 16) / 16**8 < test_fraction


# the summary numbers a pipeline run carries from fetch (tracking.log_results)
HEADLINE = ("rows_kept", "train", "test")


def fetch(p: FetchParams) -> tuple[list[dict], list[dict], dict]:
    """(train rows, test rows, summary) for the source the params name."""
    revision, folder = None, Path(p.path if p.source == "path" else p.hf_dataset)
    if p.source == "embedded":
        origin, raw_rows, fmt = "embedded:music_rm/data/seeds/embedded.jsonl", read_rows(EMBEDDED_SEEDS), "schema"
    elif is_saved_dataset(folder):
        raw_rows, split = read_saved_dataset(folder, p.hf_split)
        origin, fmt = str(folder) + (f" (save_to_disk, split {split})" if split else " (save_to_disk)"), p.format
        revision = None if p.source == "path" else "local:" + os.path.abspath(folder)
    elif p.source == "path":
        origin, raw_rows, fmt = p.path, read_rows(p.path), p.format
    else:
        raw_rows, revision = read_hf(p.hf_dataset, p.hf_revision, p.hf_split, p.limit)
        origin, fmt = f"{p.hf_dataset}@{p.hf_revision}", p.format
    if p.limit:
        raw_rows = raw_rows[: p.limit]
    default_source = p.hf_dataset if p.source == "hf" else p.source
    resolved = resolve_format(fmt, raw_rows, origin)
    # the row auto detected the format from: an error there may mean the detection was wrong, so it says so
    detected_from = next((n for n, r in raw_rows if isinstance(r, dict)), None) if fmt == "auto" else None

    rows, skipped, seen, seen_ids = [], Counter(), set(), {}
    for row_no, raw in raw_rows:
        if isinstance(raw, InputError):  # a .jsonl line that is not a JSON object
            if p.on_invalid == "fail":
                raise raw
            skipped[f"line: {raw.reason.split(' (')[0]}"] += 1
            continue
        try:
            row = normalize(raw, resolved, default_source, p.max_message_chars)
            if "id" in raw and raw["id"] in seen_ids and seen_ids[raw["id"]][1] != row["id"]:
                raise SchemaError("id", f"duplicate id: an earlier row (row {seen_ids[raw['id']][0]}) has another pair")
        except SchemaError as e:
            if p.on_invalid == "fail":
                read_as = f" (the file was read as {resolved}, detected from this row)" if row_no == detected_from else ""
                raise InputError(origin, row_no, e.field, e.reason + read_as) from None
            skipped[f"{e.field.split('[')[0]}: {e.reason}"] += 1
            continue
        if "id" in raw:
            seen_ids.setdefault(raw["id"], (row_no, row["id"]))
        if row["id"] in seen:
            skipped["duplicate pair"] += 1
            continue
        seen.add(row["id"])
        rows.append(row)
    if not rows:
        read_as = f"; the file was read as {resolved}, detected from row {detected_from}" if detected_from else ""
        raise InputError(origin, None, None, f"no valid rows ({sum(skipped.values())} skipped: {dict(skipped)}{read_as})")

    train = [r for r in rows if not is_test(r, p.test_fraction)]
    test = [r for r in rows if is_test(r, p.test_fraction)]
    for name, split in (("train", train), ("test", test)):
        if not split:
            prompts = len({prompt_hash(r["chosen"]) for r in rows})
            raise InputError(origin, None, None, f"the split by prompt leaves {name} empty (pairs kept: {len(rows)}, "
                                                 f"distinct prompts: {prompts}, fetch.test_fraction: {p.test_fraction}); "
                                                 "fetch more pairs with distinct prompts, or change fetch.test_fraction")
    summary = {
        "origin": origin,
        "format": resolved + (" (detected)" if fmt == "auto" else ""),
        "resolved_revision": revision,
        "rows_read": len(raw_rows),
        "rows_kept": len(rows),
        "skipped": sum(skipped.values()),
        "skipped_by_reason": dict(sorted(skipped.items())),
        "train": len(train),
        "test": len(test),
        "multi_turn": sum(1 for r in rows if sum(m["role"] == "user" for m in r["chosen"]) > 1),
    }
    return train, test, summary
