"""Offline vLLM on the GPUs of one node: `LLM.chat` over lists of conversations, `LLM.generate` for raw prompts.

Every request carries its own seed (SamplingParams.seed), so its sample does not depend on which other
requests share the engine's batch. For every GPU of a node or of several nodes, serve the model with vLLM's
data-parallel server and use the openai backend (docs/gpu.md). On a GPU it needs the `gpu` extra; here it runs
on vLLM's CPU build in its own virtualenv (tests/test_vllm_backend.py).
"""
import gc

from ..data.chat_template import for_template
from .generator import Completions
from .request import derive_seed


class VLLMBackend:
    def __init__(self, model: str, revision: str | None, tensor_parallel_size: int, max_model_len: int | None,
                 dtype: str, unit_size: int, trust_remote_code: bool, gpu_memory_utilization: float,
                 **engine_args):
        """`engine_args`: more vllm.LLM arguments (the CPU build needs enable_chunked_prefill=False for seeds)."""
        from vllm import LLM, __version__

        self.llm = LLM(model=model, revision=revision, tensor_parallel_size=tensor_parallel_size,
                       max_model_len=max_model_len, dtype=dtype, trust_remote_code=trust_remote_code,
                       gpu_memory_utilization=gpu_memory_utilization, **engine_args)
        self.unit_size = unit_size
        self.tokenizer = self.llm.get_tokenizer()
        self.context_tokens = self.llm.model_config.max_model_len
        self.identity = {"backend": "vllm", "model": model, "revision": revision, "dtype": dtype,
                         "max_model_len": max_model_len, "vllm": __version__}

    def prompt_tokens(self, request) -> int:
        if request.raw:
            return len(self.tokenizer(request.prefix + request.prompt, add_special_tokens=False).input_ids)
        # Rendered, then tokenized without added specials, as LLM.chat does (the template writes its own BOS).
        # (apply_chat_template(tokenize=True) gives a mapping in transformers 5: its len() counts keys, not tokens.)
        text = self.tokenizer.apply_chat_template(self._messages(request), tokenize=False, add_generation_prompt=True)
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _messages(self, request) -> list[dict]:
        return for_template(self.tokenizer, list(request.prompt))

    def close(self) -> None:
        """Give the GPUs back: the engine, its workers and its memory (before reward models load)."""
        import torch
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

        del self.llm
        destroy_model_parallel()
        destroy_distributed_environment()
        gc.collect()
        torch.cuda.empty_cache()

    def plan(self, requests) -> list[list[int]]:
        """Units of `unit_size` requests: the engine schedules within a unit; the cache commits per unit."""
        return [list(range(k, min(k + self.unit_size, len(requests)))) for k in range(0, len(requests), self.unit_size)]

    def sampling_params(self, request, seed: int):
        from vllm import SamplingParams

        s = request.sampling
        return SamplingParams(max_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, seed=seed)

    def run(self, requests, seed: int) -> Completions:
        params = [self.sampling_params(r, derive_seed(seed, i)) for i, r in enumerate(requests)]
        chat = [i for i, r in enumerate(requests) if not r.raw]
        raw = [i for i, r in enumerate(requests) if r.raw]
        texts, cut, tokens = [""] * len(requests), [False] * len(requests), 0
        done = []
        if chat:
            done += zip(chat, self.llm.chat([self._messages(requests[i]) for i in chat],
                                            sampling_params=[params[i] for i in chat], use_tqdm=False))
        if raw:
            done += zip(raw, self.llm.generate([requests[i].prefix + requests[i].prompt for i in raw],
                                               sampling_params=[params[i] for i in raw], use_tqdm=False))
        for i, out in done:
            texts[i], cut[i] = out.outputs[0].text, out.outputs[0].finish_reason == "length"
            tokens += len(out.outputs[0].token_ids)
        return Completions(texts, tokens, cut)

    def run_many(self, jobs):
        for j, (requests, seed) in enumerate(jobs):
            yield j, self.run(requests, seed)
