"""Prompt sets for Best-of-N: Anthropic HH (the real test split), UltraInteract_pair rows, the schema here."""
import gzip
import json

import pytest

from music_rm.core.errors import InputError
from music_rm.data.conversation import SchemaError, from_hh, prompt_of, validate_conversation
from music_rm.data.prompts import read_prompts


def test_hh_prompts_are_each_transcript_up_to_its_last_human_turn(shared):
    path = shared / "hh_rlhf" / "helpful-base" / "test.jsonl.gz"
    prompts, skipped = read_prompts(str(path), "hh", None, 0)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    expected, flawed = [], 0
    for row in rows:
        prompt = prompt_of(from_hh(row["chosen"], "chosen"))
        try:
            validate_conversation(prompt + [{"role": "assistant", "content": "-"}], "chosen")
        except SchemaError:
            flawed += 1
            continue
        if prompt not in expected:
            expected.append(prompt)
    assert [p for _, p in prompts] == expected  # row by row: distinct, in file order
    assert sum(skipped.values()) == flawed > 0  # real data: the flawed rows are counted, not fatal
    assert all(p[-1]["role"] == "user" for _, p in prompts)
    assert read_prompts(str(path), "auto", None, 0)[0] == prompts  # auto detects HH strings
    # a limit draws a seeded sample of the distinct prompts, in file order, not the first rows
    drawn = read_prompts(str(path), "hh", 50, 0)[0]
    assert len(drawn) == 50 and drawn != prompts[:50] and drawn == read_prompts(str(path), "hh", 50, 0)[0]
    assert drawn == sorted(drawn, key=prompts.index) and drawn != read_prompts(str(path), "hh", 50, 1)[0]
    assert len({p[0] for p in drawn}) == 50


def test_ultrainteract_trajectories_become_prompts(tmp_path):
    rows = [{"id": "1", "task": "Coding", "trajectory": [{"from": "user", "value": "Write a sort."}],
             "chosen": "def f(): ...", "rejected": "x"},
            {"id": "2", "task": "Math", "trajectory": [
                {"from": "user", "value": "2 + 2?"}, {"from": "assistant", "value": "5"},
                {"from": "user", "value": "Check again."}], "chosen": "4", "rejected": "5"}]
    path = tmp_path / "ui.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts, _ = read_prompts(str(path), "ultrainteract", None, 0)
    assert [p for _, p in prompts] == [[{"role": "user", "content": "Write a sort."}],
                                       [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "5"},
                                        {"role": "user", "content": "Check again."}]]
    assert read_prompts(str(path), "auto", None, 0)[0] == prompts
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"trajectory": [{"from": "user", "value": "Hi"}, {"from": "assistant", "value": "Yo"}]})
                   + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl: no valid prompts \(1 rows skipped: \{.trajectory: the conversation"):
        read_prompts(str(bad), "ultrainteract", None, 0)


def test_schema_prompts_match_the_old_held_out_prompts(tmp_path):
    from music_rm.data.sources import fetch
    from tests.test_sources import params as fetch_params

    _, test, _ = fetch(fetch_params())
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in test))
    prompts, _ = read_prompts(str(path), "schema", None, 0)
    assert [p for _, p in prompts] == [prompt_of(r["chosen"]) for r in test]
