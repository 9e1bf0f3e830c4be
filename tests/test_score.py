"""The score command: a trained reward model over a jsonl file of conversations or pairs."""
import json
import os
import subprocess
import sys

import pytest

from music_rm.reward.model import load_reward_model
from tests.conftest import REPO


def test_score_command_scores_conversations_and_pairs_like_the_library(tiny_reward_model, tmp_path):
    a = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]
    b = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Seven."}]
    (tmp_path / "in.jsonl").write_text(json.dumps({"id": "x", "messages": a}) + "\n"
                                       + json.dumps({"chosen": a, "rejected": b}) + "\n")
    result = subprocess.run([sys.executable, "-m", "music_rm", "score", str(tiny_reward_model), str(tmp_path / "in.jsonl"),
                             "--out", str(tmp_path / "out.jsonl")], cwd=REPO, capture_output=True, text=True,
                            env=os.environ)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    ra, rb = load_reward_model(str(tiny_reward_model)).score([a, b], batch_size=2)
    assert rows[0]["id"] == "x" and abs(rows[0]["reward"] - ra) < 1e-5
    assert rows[1]["id"] == 2 and abs(rows[1]["margin"] - (ra - rb)) < 1e-5


def test_score_command_names_a_bad_row(tiny_reward_model, tmp_path):
    (tmp_path / "in.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    result = subprocess.run([sys.executable, "-m", "music_rm", "score", str(tiny_reward_model), str(tmp_path / "in.jsonl")],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1 and "row 1: field 'messages[0].role': a conversation must end with an assistant" in result.stderr


def test_score_reads_what_fetch_reads(tiny_reward_model, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."},
            {"prompt": "Name a fruit.", "chosen": "Apple.", "rejected": "Chair."}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    (tmp_path / "in.json").write_text(json.dumps(rows))
    outputs = []
    for name in ("in.parquet", "in.json"):
        result = subprocess.run([sys.executable, "-m", "music_rm", "score", str(tiny_reward_model), str(tmp_path / name)],
                                cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
        outputs.append([json.loads(line) for line in result.stdout.splitlines()])
    assert outputs[0] == outputs[1] and [r["id"] for r in outputs[0]] == [1, 2]
    with load_reward_model(str(tiny_reward_model)) as rm:
        chosen, rejected = rm.score_pairs([{"chosen": [{"role": "user", "content": "Name a colour."},
                                                       {"role": "assistant", "content": "Blue."}],
                                            "rejected": [{"role": "user", "content": "Name a colour."},
                                                         {"role": "assistant", "content": "Seven."}]}])
    assert abs(outputs[0][0]["margin"] - (chosen[0] - rejected[0])) < 1e-5


@pytest.mark.parametrize("folder, message", [
    (lambda model_root, base: model_root, "not a model folder (no config.json); name one model's folder"),
    (lambda model_root, base: base, "not a reward model: ['LlamaForCausalLM'] has no trained scalar score head"),
])
def test_score_refuses_what_is_not_a_reward_model_and_writes_nothing(tiny_model, tiny_reward_model, tmp_path, folder,
                                                                     message):
    (tmp_path / "models" / "music").mkdir(parents=True)
    (tmp_path / "models" / "music" / "seed-0").symlink_to(tiny_reward_model)
    (tmp_path / "in.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                                                {"role": "assistant", "content": "Yo"}]}) + "\n")
    target = folder(tmp_path / "models", tiny_model)
    result = subprocess.run([sys.executable, "-m", "music_rm", "score", str(target), str(tmp_path / "in.jsonl"),
                             "--out", str(tmp_path / "out.jsonl")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.strip() == f"Error: {target}: {message}" + (
        " (train one with the train stage)" if "score head" in message else ", e.g. models/rm/music/seed-0")
    assert not (tmp_path / "out.jsonl").exists()


def test_score_refuses_a_model_folder_without_weights_in_one_line(tiny_reward_model, tmp_path):
    target = tmp_path / "no-weights"
    target.mkdir()
    for path in tiny_reward_model.iterdir():  # everything but the weights: a copy cut short
        if path.is_file() and path.suffix != ".safetensors":
            (target / path.name).write_bytes(path.read_bytes())
    (tmp_path / "in.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                                                {"role": "assistant", "content": "Yo"}]}) + "\n")
    result = subprocess.run([sys.executable, "-m", "music_rm", "score", str(target), str(tmp_path / "in.jsonl"),
                             "--out", str(tmp_path / "out.jsonl")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.strip() == (
        f"Error: {target}: no weights beside config.json (none of *.safetensors, pytorch_model*.bin); copy the "
        "whole model folder, or rerun the train stage that wrote it")
    assert not (tmp_path / "out.jsonl").exists()
