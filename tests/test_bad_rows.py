"""Every kind of bad row in fixtures/bad_rows.py, through fetch, with on_invalid=fail and on_invalid=skip."""
import subprocess
import sys

import pytest
import yaml

from music_rm.core.errors import InputError
from music_rm.data.sources import fetch
from fixtures.bad_rows import CASES, MAX_CHARS, write_case
from tests.conftest import repo_params
from tests.test_sources import params


def test_at_least_twenty_kinds(report):
    kinds = sorted({c.kind for c in CASES})
    assert len(kinds) >= 20
    report(f"bad-row kinds fed to fetch: {len(kinds)} ({', '.join(kinds)})")


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_fail_names_file_row_and_field(case, tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_case(case, path)
    p = params(source="path", path=str(path), max_message_chars=MAX_CHARS)
    if case.error is None:  # not an error: counted even when on_invalid=fail
        _, _, summary = fetch(p)
        assert summary["skipped_by_reason"] == {case.skip: 1}
        return
    with pytest.raises(InputError) as e:
        fetch(p)
    row, field, message = case.error
    assert (e.value.file, e.value.row, e.value.field) == (str(path), row, field)
    assert e.value.reason.startswith(message), e.value.reason


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_skip_counts_the_reason(case, tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_case(case, path)
    p = params(source="path", path=str(path), max_message_chars=MAX_CHARS, on_invalid="skip")
    if case.skip is None:
        with pytest.raises(InputError, match=case.error[2]):
            fetch(p)
        return
    train, test, summary = fetch(p)
    assert summary["rows_read"] == 3 and summary["rows_kept"] == len(train + test) == 2
    assert summary["skipped_by_reason"] == {case.skip: 1}


def test_fully_invalid_input_exits_nonzero_with_the_message_not_a_traceback(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b'{"chosen": [\n')
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params(fetch={"source": "path", "path": str(path),
                                                                            "on_invalid": "skip"})))
    result = subprocess.run([sys.executable, "stages/fetch.py", "--params", str(tmp_path / "params.yaml"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True,
                            env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PATH": ""})
    assert result.returncode == 1
    assert f"Error: {path}: no valid rows (1 skipped: {{'line: broken JSON line': 1}})" in result.stderr
    assert "Traceback" not in result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["stage.log"]  # the stage's log, and no output
