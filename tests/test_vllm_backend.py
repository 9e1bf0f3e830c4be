"""The offline vLLM backend: request building here, and the real engine (vLLM's CPU build, in its own virtualenv)."""
import json
import os
import subprocess
import time

import pytest

from music_rm.generation.request import Request
from music_rm.core.params import Sampling
from music_rm.generation.vllm_backend import VLLMBackend
from tests.conftest import REPO
from tests.vllm_env import CONTEXT, CPU_ENGINE_ARGS, CPU_MEMORY_SHARE, make_vllm_model, vllm_python


def unloaded(unit_size=3) -> VLLMBackend:
    """A backend without its engine: enough to check what it would send."""
    backend = VLLMBackend.__new__(VLLMBackend)
    backend.unit_size = unit_size
    return backend


def test_plan_cuts_requests_into_units_in_order():
    assert unloaded(3).plan([None] * 7) == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_model_without_a_system_role_gets_it_folded_and_prompts_are_measured(tiny_gemma2):
    from transformers import AutoTokenizer

    backend = unloaded()
    backend.tokenizer = AutoTokenizer.from_pretrained(tiny_gemma2)  # what LLM.get_tokenizer() gives
    messages = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi."})
    request = Request(messages, Sampling(max_new_tokens=7, temperature=0.5, top_p=0.8))
    assert backend._messages(request) == [{"role": "user", "content": "Be brief.\n\nHi."}]  # what LLM.chat gets
    text = backend.tokenizer.apply_chat_template(backend._messages(request), tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|><start_of_turn>user\nBe brief.\n\nHi.")  # the template's BOS, once
    assert backend.prompt_tokens(request) == len(backend.tokenizer(text, add_special_tokens=False).input_ids) > 2


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """The offline backend run once, in the vLLM virtualenv (vLLM's CPU build), on a tiny model."""
    python = vllm_python()
    model = make_vllm_model(tmp_path_factory.mktemp("vllm-model"))
    args = {"model": str(model), "context": CONTEXT, "memory_share": CPU_MEMORY_SHARE, "engine_args": CPU_ENGINE_ARGS}
    start = time.monotonic()
    result = subprocess.run([python, "tests/vllm_offline.py", json.dumps(args)], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "seconds": time.monotonic() - start}


def test_prompt_tokens_are_the_engines_own_count(offline, report):
    report(f"offline vLLM backend on the CPU build (tiny model, start to close): {offline['seconds']:.0f} s")
    assert offline["prompt_tokens"] == offline["engine_prompt_tokens"]
    assert min(offline["prompt_tokens"]) > 5  # a count of tokens, not of a mapping's keys (2)


def test_a_prompt_over_the_context_is_never_sent_and_counted(offline):
    assert offline["long_prompt_tokens"] > offline["context_tokens"] == CONTEXT
    assert offline["first"][-1] is None and all(offline["first"][:-1])
    assert offline["too_long"] == 1


def test_the_same_seed_gives_the_same_text_and_another_seed_another(offline):
    assert offline["first"] == offline["again"]
    assert offline["other"][:-1] != offline["first"][:-1]


def test_a_reply_stopped_at_max_new_tokens_is_flagged_cut(offline):
    assert offline["cut"] == [True, True, True]
