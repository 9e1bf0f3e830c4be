import inspect

import pytest

from music_rm.generation.request import Request
from music_rm.core.params import Sampling
from music_rm.generation.vllm_backend import VLLMBackend


def unloaded(unit_size=3) -> VLLMBackend:
    """A backend without its engine: enough to check what it would send."""
    backend = VLLMBackend.__new__(VLLMBackend)
    backend.unit_size = unit_size
    return backend


def test_plan_cuts_requests_into_units_in_order():
    assert unloaded(3).plan([None] * 7) == [[0, 1, 2], [3, 4, 5], [6]]


def test_requests_match_the_real_vllm_signatures():
    vllm = pytest.importorskip("vllm", reason="vllm is a GPU-only extra, not installed here: signatures unchecked")
    init = inspect.signature(vllm.LLM.__init__).parameters
    for name in ("model", "revision", "tensor_parallel_size", "max_model_len", "dtype", "trust_remote_code",
                 "gpu_memory_utilization"):
        assert name in init or any(p.kind is p.VAR_KEYWORD for p in init.values()), name
    for method in (vllm.LLM.chat, vllm.LLM.generate):
        params = inspect.signature(method).parameters
        assert "sampling_params" in params and "use_tqdm" in params
    sp = unloaded().sampling_params(Request(("x",), Sampling(max_new_tokens=7, temperature=0.5, top_p=0.8)), seed=11)
    assert (sp.max_tokens, sp.temperature, sp.top_p, sp.seed) == (7, 0.5, 0.8, 11)


def test_a_model_without_a_system_role_gets_it_folded_and_prompts_are_measured(tiny_gemma2):
    from transformers import AutoTokenizer

    backend = unloaded()
    backend.tokenizer = AutoTokenizer.from_pretrained(tiny_gemma2)  # what LLM.get_tokenizer() gives
    messages = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi."})
    request = Request(messages, Sampling(max_new_tokens=7, temperature=0.5, top_p=0.8))
    assert backend._messages(request) == [{"role": "user", "content": "Be brief.\n\nHi."}]  # what LLM.chat gets
    ids = backend.tokenizer.apply_chat_template(backend._messages(request), tokenize=True, add_generation_prompt=True)
    assert backend.prompt_tokens(request) == len(ids) > 0
