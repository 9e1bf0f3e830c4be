"""The score command: a trained reward model over a jsonl file of conversations or pairs."""
import json
import os
import shutil
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


def score_cli(*args):
    return subprocess.run([sys.executable, "-m", "music_rm", "score", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True)


def one_line_error(result) -> str:
    """The one error line of a run that failed without a traceback (progress bars aside)."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.returncode == 1 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return errors[0]


def hi(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]})
                    + "\n")
    return path


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "--batch-size 0: should be greater than or equal to 1 (as eval.batch_size)"),
    (["--max-length", "-5"], "--max-length -5: should be greater than or equal to 1 (as eval.max_length)"),
    (["--max-length", "1"], "--max-length 1: shorter than the 12 tokens a one-word exchange takes through this "
                            "model's chat template; every conversation would be scored on a fragment"),
])
def test_score_refuses_a_batch_size_or_length_eval_refuses_in_one_line(tiny_reward_model, tmp_path, args, message):
    result = score_cli(tiny_reward_model, hi(tmp_path), "--out", tmp_path / "out.jsonl", *args)
    assert one_line_error(result) == f"Error: {message}"
    assert not (tmp_path / "out.jsonl").exists()


def test_score_keeps_to_the_trained_length_by_default_and_counts_what_it_shortened(tiny_reward_model, tmp_path):
    """A 100,000-character message (over the model's context) is scored at the length the model was trained with
    (its reward_model.json), and the closing line says so."""
    model = tmp_path / "rm"
    shutil.copytree(tiny_reward_model, model)
    (model / "reward_model.json").write_text(json.dumps({"max_length": 64}))
    long = [{"role": "user", "content": "word " * 20_000}, {"role": "assistant", "content": "Yo"}]
    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"messages": m}) + "\n" for m in (long, short)))
    result = score_cli(model, tmp_path / "in.jsonl")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "score: 2 rows → stdout; 1 of 2 conversations were over 64 tokens (the length the model was trained with) "
        "and were shortened by eval's length rule")
    with load_reward_model(str(model)) as rm:
        expected = rm.score([long, short], max_length=64)
    assert [json.loads(line)["reward"] for line in result.stdout.splitlines()] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("damage, message", [
    (lambda m: (m / "config.json").write_text((m / "config.json").read_text()[:40]),
     "config.json: not valid JSON (Unterminated string"),
    (lambda m: (m / "model.safetensors").write_bytes((m / "model.safetensors").read_bytes()[:5000]),
     "cannot load the model (Error while deserializing header: incomplete metadata, file not fully covered)"),
])
def test_score_refuses_a_broken_config_or_weights_cut_short_in_one_line(tiny_reward_model, tmp_path, damage, message):
    model = tmp_path / "rm"
    shutil.copytree(tiny_reward_model, model)
    damage(model)
    line = one_line_error(score_cli(model, hi(tmp_path), "--out", tmp_path / "out.jsonl"))
    assert line.startswith(f"Error: {model}") and message in line
    assert line.endswith("copy the whole model folder again, or rerun the train stage that wrote it")
