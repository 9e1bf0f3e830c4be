"""Preference data in: the embedded seed set, a local file, or a Hugging Face dataset; one schema out."""
import json
import os
import re
from collections import Counter
from importlib import resources
from pathlib import Path

from ..core.errors import InputError
from ..core.hub import hub_access, resolved_revision
from ..core.io import iter_jsonl, open_bytes
from ..core.params import FetchParams
from .conversation import SchemaError, canonical_hash, normal_form, pair_id, prompt_hash, prompt_key, validate_pair
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
                                           ".parquet file in it")
    if not path.is_file():
        raise InputError(path, None, None, "no such file")
    kind = file_kind(path)
    if kind not in SUFFIXES:
        raise InputError(path, None, None, "unsupported file type (use .jsonl, .json or .parquet, each optionally .gz)")
    try:
        with open_bytes(path) as f:
            head = f.read(4096)
            if kind != ".parquet" and head.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise InputError(path, None, None, "is UTF-16 text (it starts with a UTF-16 byte order mark, as "
                                                   "Windows PowerShell writes files): save it as UTF-8")
            head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
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


# Split names as datasets knows them (datasets/data_files.py, the keywords of its default split patterns)
SPLIT_NAMES = {"train", "training", "test", "testing", "eval", "evaluation", "validation", "valid", "val", "dev"}
_SHARD = re.compile(r"[-_.]\d+(-of-\d+)?$")      # train-00000-of-00002, part_003, data.0
_HUB_SHARD = re.compile(r"^(\w+)-\d+-of-\d+$")   # the Hub's own naming: <split>-<shard>-of-<shards>


def split_of(relative: Path) -> str | None:
    """The split a data file of a dataset folder belongs to, by the Hub's layouts: <split>-00000-of-00002.<ext>,
    <split>.<ext>, or a <split>/ folder; None when its path names no split."""
    name = relative.name
    while Path(name).suffix in (".gz", *SUFFIXES):
        name = name[: -len(Path(name).suffix)]
    if match := _HUB_SHARD.match(name):
        return match.group(1)
    stem = _SHARD.sub("", name)
    return next((part for part in (stem, *reversed(relative.parent.parts)) if part.lower() in SPLIT_NAMES), None)


def shard_files(folder: Path, split: str) -> tuple[list[Path], str | None]:
    """The data files of a local dataset folder (.jsonl, .json, .parquet, each optionally .gz, at any depth; hidden
    ones skipped), in path order, and the split taken: where the paths name splits (split_of), those of `split`
    (fetch.hf_split) only. A folder with no data file, or with splits but not `split`, is one InputError."""
    files = sorted(f for f in folder.rglob("*") if f.is_file() and file_kind(f) in SUFFIXES
                   and not any(part.startswith(".") for part in f.relative_to(folder).parts))
    if not files:
        raise InputError(folder, None, None, f"a folder with no .jsonl, .json or .parquet file, and no folder that "
                                           f"datasets' save_to_disk wrote ({folder_contents(folder)})")
    splits = {f: split_of(f.relative_to(folder)) for f in files}
    named = sorted({s for s in splits.values() if s})
    if not named:
        return files, None
    if split not in named:
        raise InputError(folder, None, None, f"its files hold the splits {named}, not {split!r} (fetch.hf_split)")
    return [f for f in files if splits[f] == split], split


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


def read_hf(dataset: str, revision: str, split: str, limit: int | None, param: str = "fetch.hf_dataset",
            local: str = "fetch.source: path with fetch.path: <its folder>") -> tuple[list[tuple[int, dict]], str]:
    """Rows of a Hub dataset (or a local dataset folder) and the commit the Hub resolved. A Hub that cannot be
    reached or has no such dataset is one StageFailure naming `param` and the way to a local copy (`local`)."""
    import datasets

    split_spec = f"{split}[:{limit}]" if limit else split
    if os.path.isdir(dataset):
        try:
            loaded = datasets.load_dataset(dataset, revision=revision, split=split_spec)
        except Exception as e:  # any failure of datasets' loaders on a local folder, as one line
            raise InputError(dataset, None, None, f"datasets cannot load this folder ({folder_contents(Path(dataset))}): "
                                                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        return list(enumerate(loaded.to_list(), start=1)), "local:" + os.path.abspath(dataset)
    with hub_access(f"{param} {dataset!r} (revision {revision}, split {split})", local):
        loaded = datasets.load_dataset(dataset, revision=revision, split=split_spec)
        resolved = resolved_revision(dataset, revision, "dataset")
    return list(enumerate(loaded.to_list(), start=1)), resolved


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


def split_keys(rows: list[dict]) -> dict[str, str]:
    """{exact prompt hash: the hash its split is decided by}. Prompts equal once normalised (conversation.prompt_key:
    system messages dropped, NFKC, format characters removed, whitespace runs as one space) are one group, decided
    by the smallest exact hash among its members: near-duplicates share a split, and data without near-duplicates
    splits as it did when the split keyed on the exact prompt."""
    groups: dict[str, set[str]] = {}
    for row in rows:
        groups.setdefault(prompt_key(row["chosen"]), set()).add(prompt_hash(row["chosen"]))
    return {exact: min(members) for members in groups.values() for exact in members}


def is_test(key: str, test_fraction: float) -> bool:
    """Whether the prompt whose split_keys value is `key` is held out."""
    return int(key[:8], 16) / 16**8 < test_fraction


def _pair_key(chosen: list[dict], rejected: list[dict]) -> str:
    return canonical_hash({"chosen": normal_form(chosen), "rejected": normal_form(rejected)})


def _where(origin: str, located: tuple[str, int]) -> str:
    """A row's place for a message that names another row: "row 3", or "row 3 of <file>" in another file."""
    file, row_no = located
    return f"row {row_no}" + (f" of {file}" if file != origin else "")


def read_source(p: FetchParams) -> tuple[list[tuple[str, int, object]], str, str, str | None]:
    """(rows as (file, row number, raw row), origin, format, resolved revision) of the source the params name."""
    folder = Path(p.path if p.source == "path" else p.hf_dataset)
    if p.source == "embedded":
        origin = "embedded:music_rm/data/seeds/embedded.jsonl"
        return [(origin, n, raw) for n, raw in read_rows(EMBEDDED_SEEDS)], origin, "schema", None
    if is_saved_dataset(folder):
        rows, split = read_saved_dataset(folder, p.hf_split)
        origin = str(folder) + (f" (save_to_disk, split {split})" if split else " (save_to_disk)")
        revision = None if p.source == "path" else "local:" + os.path.abspath(folder)
        return [(origin, n, raw) for n, raw in rows], origin, p.format, revision
    if p.source == "path" and folder.is_dir():
        files, split = shard_files(folder, p.hf_split)
        origin = f"{folder} ({len(files)} file{'s' * (len(files) > 1)}" + (f", split {split})" if split else ")")
        return [(str(f), n, raw) for f in files for n, raw in read_rows(f)], origin, p.format, None
    if p.source == "path":
        return [(p.path, n, raw) for n, raw in read_rows(p.path)], p.path, p.format, None
    rows, revision = read_hf(p.hf_dataset, p.hf_revision, p.hf_split, p.limit)
    origin = f"{p.hf_dataset}@{p.hf_revision}"
    return [(origin, n, raw) for n, raw in rows], origin, p.format, revision


# the summary numbers a pipeline run carries from fetch (tracking.log_results)
HEADLINE = ("rows_kept", "train", "test")


def fetch(p: FetchParams) -> tuple[list[dict], list[dict], dict]:
    """(train rows, test rows, summary) for the source the params name."""
    raw_rows, origin, fmt, revision = read_source(p)
    if p.limit:
        raw_rows = raw_rows[: p.limit]
    default_source = p.hf_dataset if p.source == "hf" else p.source
    first = next(((file, n) for file, n, r in raw_rows if isinstance(r, dict)), None)
    resolved = resolve_format(fmt, [(n, r) for _, n, r in raw_rows], first[0] if first else origin)
    # the row auto detected the format from: an error there may mean the detection was wrong, so it says so
    detected_from = first if fmt == "auto" else None

    rows, located, skipped, seen, seen_ids = [], [], Counter(), set(), {}
    for file, row_no, raw in raw_rows:
        if isinstance(raw, InputError):  # a .jsonl line that is not a JSON object
            if p.on_invalid == "fail":
                raise raw
            skipped[f"line: {raw.reason.split(' (')[0]}"] += 1
            continue
        try:
            row = normalize(raw, resolved, default_source, p.max_message_chars)
            if "id" in raw and raw["id"] in seen_ids and seen_ids[raw["id"]][1] != row["id"]:
                earlier = _where(file, seen_ids[raw["id"]][0])
                raise SchemaError("id", f"duplicate id: an earlier row ({earlier}) has another pair")
        except SchemaError as e:
            if p.on_invalid == "fail":
                read_as = (f" (the file was read as {resolved}, detected from this row)"
                           if (file, row_no) == detected_from else "")
                raise InputError(file, row_no, e.field, e.reason + read_as) from None
            skipped[f"{e.field.split('[')[0]}: {e.reason}"] += 1
            continue
        if "id" in raw:
            seen_ids.setdefault(raw["id"], ((file, row_no), row["id"]))
        if row["id"] in seen:
            skipped["duplicate pair"] += 1
            continue
        seen.add(row["id"])
        rows.append(row)
        located.append((file, row_no))
    rows, contradictory = drop_contradictory(rows, located, p.on_invalid)
    if contradictory:
        skipped[CONTRADICTORY] += contradictory
    if not rows:
        read_as = (f"; the file was read as {resolved}, detected from {_where(origin, detected_from)}"
                   if detected_from else "")
        raise InputError(origin, None, None, f"no valid rows ({sum(skipped.values())} skipped: {dict(skipped)}{read_as})")

    keys = split_keys(rows)
    held_out = [is_test(keys[prompt_hash(r["chosen"])], p.test_fraction) for r in rows]
    train = [r for r, out in zip(rows, held_out) if not out]
    test = [r for r, out in zip(rows, held_out) if out]
    prompts = len(set(keys.values()))
    for name, split in (("train", train), ("test", test)):
        if not split:
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
        "contradictory_pairs": contradictory,
        "train": len(train),
        "test": len(test),
        "prompts": prompts,
        # prompts that differ from another kept prompt only in whitespace, Unicode form or a system message (each
        # beyond the first): one split holds them all (split_keys)
        "near_duplicate_prompts": len(keys) - prompts,
        "multi_turn": sum(1 for r in rows if sum(m["role"] == "user" for m in r["chosen"]) > 1),
    }
    return train, test, summary


def is_reserved(key: str, reserve_fraction: float) -> bool:
    """Whether the train prompt whose split_keys value is `key` is kept in reserve: by hash digits that the test
    split does not read, so the reserve is a random share of the train prompts whatever fetch.test_fraction is."""
    return int(key[8:16], 16) / 16**8 < reserve_fraction


def fetch_with_reserve(p: FetchParams) -> tuple[list[dict], list[dict], list[dict], dict]:
    """(train rows, reserve rows, test rows, summary): `fetch`, with the share fetch.reserve_fraction of the train
    prompts kept out of the train rows, for the diversity-matched control alone (method/contrast.py). Prompts equal
    once normalised go to the reserve together, as they go to one split (split_keys)."""
    train, test, summary = fetch(p)
    keys = split_keys(train)
    reserved = [is_reserved(keys[prompt_hash(r["chosen"])], p.reserve_fraction) for r in train]
    reserve = [r for r, kept in zip(train, reserved) if kept]
    train = [r for r, kept in zip(train, reserved) if not kept]
    if not train:
        raise InputError(summary["origin"], None, None, f"fetch.reserve_fraction {p.reserve_fraction} leaves no train "
                                                        f"pair (all {len(reserve)} are in reserve): lower it")
    return train, reserve, test, {**summary, "train": len(train), "reserve": len(reserve)}


CONTRADICTORY = "contradictory pair: another row has its chosen and rejected swapped"


def drop_contradictory(rows: list[dict], located: list[tuple[str, int]], on_invalid: str) -> tuple[list[dict], int]:
    """`rows` without the pairs whose label-swapped twin (the same conversations, normalised as the split
    normalises them, with chosen and rejected swapped) is also a row, and how many were dropped: both rows of each
    such pair go, since neither label can be trusted. With on_invalid fail, the first twin is one InputError
    naming both rows. `located`: each row's (file, row number)."""
    first = {}
    for i, row in enumerate(rows):
        first.setdefault(_pair_key(row["chosen"], row["rejected"]), i)
    dropped = set()
    for i, row in enumerate(rows):
        twin = first.get(_pair_key(row["rejected"], row["chosen"]))
        if twin is None or twin == i:
            continue
        if on_invalid == "fail" and twin < i:
            file, row_no = located[i]
            raise InputError(file, row_no, None, f"{_where(file, located[twin])} has this pair with chosen and "
                                                 "rejected swapped (contradictory labels); fetch.on_invalid: skip "
                                                 "drops both")
        dropped.add(i)
    return [r for i, r in enumerate(rows) if i not in dropped], len(dropped)
