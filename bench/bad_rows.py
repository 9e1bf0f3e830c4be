"""Report: each kind of bad input row and what fetch does with it.

    python bench/bad_rows.py [--small]

The cases are fixtures/bad_rows.py's (tests/test_bad_rows.py asserts each outcome); fetch's params are
params.yaml's, with each case as the `path` source. It takes seconds either way: --small changes nothing.
"""
import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fixtures.bad_rows import CASES, MAX_CHARS, write_case  # noqa: E402
from music_rm.core.errors import InputError  # noqa: E402
from music_rm.core.params import load_params  # noqa: E402
from music_rm.data.sources import fetch  # noqa: E402


def outcome(case, folder: Path, on_invalid: str) -> str:
    path = folder / "pairs.jsonl"
    write_case(case, path)
    p = load_params(REPO / "params.yaml").fetch.model_copy(
        update=dict(source="path", path=str(path), format="auto", max_message_chars=MAX_CHARS, on_invalid=on_invalid))
    try:
        _, _, summary = fetch(p)
    except InputError as e:
        return f"error: {e.reason} (row {e.row}, field {e.field})"
    return f"skipped: {next(iter(summary['skipped_by_reason']))}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="Accepted by every bench; this one is small already.")
    parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("| kind | on_invalid=fail | on_invalid=skip |\n|---|---|---|")
        for case in CASES:
            print(f"| {case.kind} | {outcome(case, Path(tmp), 'fail')} | {outcome(case, Path(tmp), 'skip')} |")
    print(f"\n{len({c.kind for c in CASES})} kinds of bad rows")


if __name__ == "__main__":
    main()
