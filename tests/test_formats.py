"""Bring your own preference data: every format fetch reads, checked row by row against real files where
../shared/data has them, and every bad input ending in one line."""
import gzip
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from music_rm.core.errors import InputError
from music_rm.data.conversation import from_hh
from music_rm.data.sources import fetch, read_rows
from tests.conftest import REPO, repo_params
from tests.test_sources import params

USER, ASSISTANT = "user", "assistant"


def fetched(path, **overrides):
    train, test, summary = fetch(params(source="path", path=str(path), test_fraction=0.5, **overrides))
    return train + test, summary


def by_chosen(rows):
    return {json.dumps(r["chosen"]): r for r in rows}


def test_trl_standard_explicit_prompt_ultrafeedback(shared):
    path = shared / "ultrafeedback_binarized_sample" / "eval_clean.jsonl"
    with pytest.raises(InputError, match=r"eval_clean.jsonl: row \d+: field 'rejected': identical to chosen"):
        fetched(path)  # real data: a pair whose answers differ only in whitespace
    rows, summary = fetched(path, on_invalid="skip")
    assert summary["format"] == "trl_prompt (detected)" and summary["rows_read"] == 200
    kept = by_chosen(rows)
    matched = set()
    for r in (json.loads(line) for line in path.read_text().splitlines()):  # row by row against the input
        chosen = [{"role": USER, "content": r["prompt"]}, {"role": ASSISTANT, "content": r["chosen"]}]
        if json.dumps(chosen) in kept:
            matched.add(json.dumps(chosen))
            assert kept[json.dumps(chosen)]["rejected"] == chosen[:1] + [{"role": ASSISTANT, "content": r["rejected"]}]
    assert len(matched) == summary["rows_kept"] == 200 - summary["skipped"] > 190


def test_llamafactory_sharegpt_dpo_demo(shared):
    path = shared / "llamafactory_dpo_en_demo" / "dpo_en_demo.json"
    rows, summary = fetched(path)
    assert summary["format"] == "sharegpt (detected)" and summary["rows_read"] == 300
    kept = by_chosen(rows)
    roles = {"system": "system", "human": USER, "gpt": ASSISTANT}
    matched = set()
    for r in json.loads(path.read_text()):
        chosen = [{"role": roles[t["from"]], "content": t["value"]} for t in r["conversations"] + [r["chosen"]]]
        assert json.dumps(chosen) in kept  # every row, converted
        matched.add(json.dumps(chosen))
        assert kept[json.dumps(chosen)]["rejected"] == chosen[:-1] + [{"role": ASSISTANT, "content": r["rejected"]["value"]}]
    assert len(matched) == summary["rows_kept"] == 300 - summary["skipped_by_reason"]["duplicate pair"]
    assert sum(1 for r in rows if r["chosen"][0]["role"] == "system") > 0  # the system messages came through


def test_hh_as_distributed_gzipped(shared):
    path = shared / "hh_rlhf" / "helpful-base" / "test.jsonl.gz"
    rows, summary = fetched(path, on_invalid="skip")
    assert summary["format"] == "hh (detected)" and summary["rows_read"] == 2354
    assert summary["rows_kept"] + summary["skipped"] == 2354 and summary["skipped_by_reason"]
    with gzip.open(path, "rt", encoding="utf-8") as f:
        first = json.loads(f.readline())
    assert rows[0]["chosen"] == from_hh(first["chosen"], "chosen") or by_chosen(rows).get(
        json.dumps(from_hh(first["chosen"], "chosen")))


def conversational(i=0, name=None, chosen="Blue.", rejected="Seven."):
    prompt = [{"role": "user", "content": f"Name colour {i}."}]
    if name is not None:
        prompt[0]["name"] = name
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def write(path, rows):
    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows), sink)
        data = sink.getvalue().to_pybytes()
    elif name.endswith(".json"):
        data = json.dumps(rows).encode()
    else:
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("name", ["p.jsonl", "p.json", "p.parquet", "p.jsonl.gz", "p.json.gz", "p.parquet.gz"])
def test_trl_conversational_explicit_prompt_in_every_file_type(tmp_path, name):
    rows, summary = fetched(write(tmp_path / name, [conversational(i) for i in range(6)]))
    assert summary["format"] == "trl_conversational (detected)" and len(rows) == 6
    assert all(r["chosen"][-1] == {"role": ASSISTANT, "content": "Blue."} for r in rows)


def test_a_null_filled_optional_key_is_no_error_and_a_filled_one_is_named_on_its_row(tmp_path):
    rows = [conversational(i) for i in range(5)]
    rows[2] = conversational(2, name="bob")  # pyarrow gives every other row's message name: null
    path = write(tmp_path / "p.parquet", rows)
    assert any("name" in m for m in read_rows(path)[0][1]["prompt"])  # the writer did fill it
    with pytest.raises(InputError, match=r"p.parquet: row 3: field 'chosen\[0\]': unexpected key\(s\) \['name'\]"):
        fetched(path)
    kept, summary = fetched(path, on_invalid="skip")
    assert len(kept) == 4 and summary["skipped"] == 1


@pytest.mark.parametrize("row", [
    {"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello  there"}],
     "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there "}]},
    {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello  there", "rejected": "\n\nHuman: Hi\n\nAssistant: Hello there"},
    {"prompt": "Hi", "chosen": "Hello\nthere", "rejected": "Hello there"},
    {"conversations": [{"from": "human", "value": "Hi"}], "chosen": {"from": "gpt", "value": "Hello there"},
     "rejected": {"from": "gpt", "value": " Hello there"}},
], ids=["schema", "hh", "trl_prompt", "sharegpt"])
def test_a_pair_equal_but_for_whitespace_is_the_same_bad_row_in_every_format(tmp_path, row):
    path = write(tmp_path / "p.jsonl", [row])
    with pytest.raises(InputError, match=r"row 1: field 'rejected': identical to chosen \(whitespace aside\)"):
        fetched(path)


def test_a_byte_order_mark_is_not_a_bad_row(tmp_path):
    rows = [conversational(i) for i in range(3)]
    (tmp_path / "p.jsonl").write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in rows).encode())
    (tmp_path / "p.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(rows).encode())
    for name in ("p.jsonl", "p.json"):
        kept, summary = fetched(tmp_path / name, on_invalid="skip")
        assert len(kept) == 3 and summary["skipped"] == 0


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "p.jsonl").write_text(json.dumps([conversational(0), conversational(1)])),
     "p.jsonl: holds a JSON array, not JSON lines (one object per line): name it .json"),
    (lambda d: (d / "p.parquet").write_text("not a parquet file\n"), "p.parquet: not a Parquet file"),
    (lambda d: (d / "p.jsonl.gz").write_text("plain text, not gzip\n"), "p.jsonl.gz: cannot be read as jsonl.gz"),
    (lambda d: (d / "p").mkdir(), "p: a folder with no .jsonl, .json or .parquet file, and no folder that datasets' "
                                  "save_to_disk wrote (empty)"),
    (lambda d: (d / "p.jsonl").write_text(json.dumps({"question": "Hi", "answer": "Yo"}) + "\n"),
     "p.jsonl: row 1: matches no known preference format (tried schema, hh, trl_prompt, trl_conversational, "
     "ultrafeedback_binarized, sharegpt); its first row looks like {'question': str, 'answer': str}"),
    (lambda d: (d / "p.jsonl").write_text(json.dumps(conversational(0)) + "\n", encoding="utf-16"),
     "p.jsonl: is UTF-16 text (it starts with a UTF-16 byte order mark, as Windows PowerShell writes files): save "
     "it as UTF-8"),
    (lambda d: (d / "p.jsonl").write_text(json.dumps(conversational(0, chosen="Blue\u0000")) + "\n"),
     "p.jsonl: row 1: field 'chosen[1].content': contains a NUL character"),
])
def test_bad_input_ends_in_one_line_through_the_stage(tmp_path, make, message):
    make(tmp_path)
    target = next(p for p in tmp_path.iterdir())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params(fetch={"source": "path", "path": str(target)})))
    result = subprocess.run([sys.executable, "stages/fetch.py", "--params", str(tmp_path / "params.yaml"),
                             "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr  # one line: no traceback, no log noise
    assert lines[0].startswith(f"Error: {tmp_path}/") and message in lines[0]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["stage.log"]  # the stage's log, and no output


def ultrafeedback_binarized(row: dict) -> dict:
    """A row of the flattened sample rebuilt into UltraFeedback binarized's own columns (HuggingFaceH4's)."""
    import hashlib

    prompt = {"role": USER, "content": row["prompt"]}
    chosen = [prompt, {"role": ASSISTANT, "content": row["chosen"]}]
    return {"prompt": row["prompt"], "prompt_id": hashlib.sha256(row["prompt"].encode()).hexdigest(),
            "chosen": chosen, "rejected": [prompt, {"role": ASSISTANT, "content": row["rejected"]}],
            "messages": chosen, "score_chosen": row["metadata"]["score_chosen"],
            "score_rejected": row["metadata"]["score_rejected"]}


def test_ultrafeedback_binarized_columns_are_detected_and_read_row_by_row(shared, tmp_path):
    source = shared / "ultrafeedback_binarized_sample" / "eval_clean.jsonl"
    originals = [json.loads(line) for line in source.read_text().splitlines()]
    path = tmp_path / "ultrafeedback_binarized.jsonl"
    path.write_text("".join(json.dumps(ultrafeedback_binarized(r)) + "\n" for r in originals))
    rows, summary = fetched(path, on_invalid="skip")
    assert summary["format"] == "ultrafeedback_binarized (detected)" and summary["rows_read"] == len(originals)
    kept = by_chosen(rows)
    for r in originals:  # row by row: each kept pair is the row's own two conversations
        rebuilt = ultrafeedback_binarized(r)
        if json.dumps(rebuilt["chosen"]) in kept:
            assert kept[json.dumps(rebuilt["chosen"])]["rejected"] == rebuilt["rejected"]
    flat_rows, flat_summary = fetched(source, on_invalid="skip")  # the same rows in TRL's flat columns
    assert {r["id"] for r in rows} == {r["id"] for r in flat_rows}
    assert summary["skipped_by_reason"] == flat_summary["skipped_by_reason"] and summary["rows_kept"] > 190


@pytest.mark.parametrize("row, message", [
    ({"prompt": "Name a colour.", "chosen": [{"role": USER, "content": "Another prompt."},
                                             {"role": ASSISTANT, "content": "Blue."}],
      "rejected": [{"role": USER, "content": "Name a colour."}, {"role": ASSISTANT, "content": "Seven."}]},
     "row 1: field 'chosen[0]': expected the user's message holding the row's prompt (the file was read as "
     "ultrafeedback_binarized, detected from this row)"),
    ({"prompt": "Name a colour.", "chosen": "Blue.", "rejected": [{"role": ASSISTANT, "content": "Seven."}]},
     "row 1: field 'rejected': expected a string, got list (the file was read as trl_prompt, detected from this row)"),
])
def test_a_detected_format_failing_on_its_first_row_says_what_it_took_the_file_for(tmp_path, row, message):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError) as e:
        fetched(path)
    assert str(e.value) == f"{path}: {message}"
