"""A trained reward-model folder served by vLLM's pooling runner (`music-rm serve`) answers the rewards
`music-rm score` gives, at the same dtype (fp32 on the CPU), through a real vLLM server (the CPU build) on
127.0.0.1. The served model is a random-init Gemma-2 (Gemma-2-9b-it's chat template: no system role, a BOS
in the template, attention soft-capping) with a score head large enough to spread the rewards."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fixtures.tiny_model import make_tiny_model
from tests.conftest import REPO
from tests.vllm_env import CPU_MEMORY_SHARE, free_port, vllm_python

SEEDS = REPO / "music_rm" / "data" / "seeds" / "embedded.jsonl"
STARTUP_S = 600


@pytest.fixture(scope="module")
def gemma2_rm(tmp_path_factory) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = make_tiny_model(tmp_path_factory.mktemp("tiny-gemma2-64"), arch="gemma2", hidden=64, heads=2)
    out = tmp_path_factory.mktemp("tiny-gemma2-rm")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    torch.nn.init.normal_(model.score.weight, std=1.0)  # rewards of a few units, not a few hundredths
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    (out / "reward_model.json").write_text(json.dumps({"attn_implementation": "eager"}))
    return out


def conversations() -> list[list[dict]]:
    """Every chosen and rejected conversation of the seed set, two with a system message, one multi-turn one
    of over a thousand tokens."""
    pairs = [json.loads(line) for line in SEEDS.read_text(encoding="utf-8").splitlines()]
    out = [p[side] for p in pairs for side in ("chosen", "rejected")]
    out += [[{"role": "system", "content": "Answer in one sentence."}, *p["chosen"]] for p in pairs[:2]]
    out.append([m for p in pairs[:16] for m in p["chosen"]])
    return out


def test_serving_template_tokenizes_as_scoring(gemma2_rm, tiny_model):
    """The template the server gets renders every conversation, a system message included, to the token ids
    scoring uses; a template with a system role is left as the folder has it."""
    from music_rm.data.chat_template import load_tokenizer, token_ids
    from music_rm.reward.serve import serving_template

    tokenizer = load_tokenizer(str(gemma2_rm))
    served = load_tokenizer(str(gemma2_rm))
    served.chat_template = serving_template(str(gemma2_rm)).read_text(encoding="utf-8")
    convs = conversations()
    assert any(c[0]["role"] == "system" for c in convs)
    for conversation in convs:
        text = served.apply_chat_template(conversation, tokenize=False)  # as vLLM renders a chat request
        assert served(text, add_special_tokens=False).input_ids == token_ids(tokenizer, conversation)
    assert serving_template(str(tiny_model)) is None


def test_serve_refuses_a_base_model(tiny_model):
    result = subprocess.run([sys.executable, "-m", "music_rm", "serve", str(tiny_model), "--dry-run"],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "not a reward model" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def served_rm(gemma2_rm, tmp_path_factory):
    """`music-rm serve` of the Gemma-2 reward model on a free port (eager: no compilation, a faster start);
    the base URL once /health answers. Stopped, engine processes included, after the module's tests."""
    python = vllm_python()
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    start = time.monotonic()
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "music_rm", "serve", str(gemma2_rm), "--python", python,
                                   "--port", str(port), "--", "--enforce-eager",
                                   "--gpu-memory-utilization", str(CPU_MEMORY_SHARE)],
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if server.poll() is not None:
                pytest.fail(f"the vLLM server exited ({server.returncode}):\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url + "/health", timeout=5)
                break
            except OSError:
                if time.monotonic() - start > STARTUP_S:
                    pytest.fail(f"the vLLM server did not answer within {STARTUP_S} s:\n{log.read_text()[-3000:]}")
                time.sleep(2)
        print(f"vLLM pooling server up in {time.monotonic() - start:.0f} s")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_served_rewards_equal_music_rm_score(served_rm, gemma2_rm, tmp_path):
    from music_rm.core.io import read_jsonl, write_jsonl
    from music_rm.reward.serve import RewardClient

    convs = conversations()
    rows = tmp_path / "conversations.jsonl"
    write_jsonl(rows, [{"id": i, "messages": c} for i, c in enumerate(convs)])
    out = tmp_path / "scores.jsonl"
    subprocess.run([sys.executable, "-m", "music_rm", "score", str(gemma2_rm), str(rows), "--out", str(out)],
                   check=True, capture_output=True)
    expected = [r["reward"] for r in sorted(read_jsonl(out), key=lambda r: r["id"])]

    served = RewardClient(served_rm, str(gemma2_rm)).score(convs)

    assert len(served) == len(expected) == 129
    worst = max(abs(a - b) for a, b in zip(served, expected))
    print(f"served vs music-rm score: {len(convs)} conversations, max |difference| {worst:.2e}, "
          f"rewards from {min(expected):.3f} to {max(expected):.3f}")
    assert worst < 1e-4
    assert max(expected) - min(expected) > 1.0  # raw rewards (a sigmoid would lie in (0, 1))


def test_conversation_over_the_context_is_one_line(served_rm, gemma2_rm):
    """Every seed conversation as one (about 6,000 tokens; the model's context is 2,048): HTTP 400, one line."""
    from music_rm.core.errors import StageFailure
    from music_rm.reward.serve import RewardClient

    pairs = [json.loads(line) for line in SEEDS.read_text(encoding="utf-8").splitlines()]
    with pytest.raises(StageFailure, match=r"HTTP 400: .*2048") as failure:
        RewardClient(served_rm, str(gemma2_rm)).reward([m for p in pairs for m in p["chosen"]])
    assert "\n" not in str(failure.value)
