"""The score command: a trained reward model over a jsonl file of conversations or pairs."""
import json
import os
import subprocess
import sys

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
