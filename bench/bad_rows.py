"""Report: each kind of bad input row and what fetch does with it (python bench/bad_rows.py)."""
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from music_rm.core.errors import InputError  # noqa: E402
from music_rm.data.sources import fetch  # noqa: E402
from tests.bad_rows import CASES, MAX_CHARS, write_case  # noqa: E402
from tests.test_sources import params  # noqa: E402


def outcome(case, folder: Path, on_invalid: str) -> str:
    path = folder / "pairs.jsonl"
    write_case(case, path)
    try:
        _, _, summary = fetch(params(source="path", path=str(path), max_message_chars=MAX_CHARS, on_invalid=on_invalid))
    except InputError as e:
        return f"error: {e.reason} (row {e.row}, field {e.field})"
    return f"skipped: {next(iter(summary['skipped_by_reason']))}"


with tempfile.TemporaryDirectory() as tmp:
    print("| kind | on_invalid=fail | on_invalid=skip |\n|---|---|---|")
    for case in CASES:
        print(f"| {case.kind} | {outcome(case, Path(tmp), 'fail')} | {outcome(case, Path(tmp), 'skip')} |")
print(f"\n{len({c.kind for c in CASES})} kinds of bad rows")
