"""Batched generation with transformers on one device (the GPU when there is one)."""
import copy

import torch

from ..data.base_model import model_fingerprint
from ..data.chat_template import for_template
from .generator import Completions
from .request import Request


class TransformersBackend:
    """Batched generation on one device; left padding, length-sorted batches, a reused prefix cache."""

    def __init__(self, model_dir: str, dtype: str, batch_size: int):
        from transformers import AutoModelForCausalLM, AutoTokenizer, __version__

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device).eval()
        self.batch_size = batch_size
        self.identity = {"backend": "transformers", "model": model_fingerprint(model_dir), "dtype": dtype,
                         "batch_size": batch_size, "transformers": __version__, "torch": torch.__version__}
        self._prefix_cache: dict[str, tuple[torch.Tensor, object]] = {}
        self.context_tokens = getattr(self.model.config, "max_position_embeddings", None)
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [self.tokenizer.eos_token_id if eos is None else eos]
        self._eos = torch.tensor(eos)  # any of them ends a completion: a row without one was cut at max_new_tokens

    def _ids(self, request: Request) -> list[int]:
        text = request.prompt if request.raw else self.tokenizer.apply_chat_template(
            for_template(self.tokenizer, list(request.prompt)), tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def prompt_tokens(self, request: Request) -> int:
        """Tokens the model reads before it writes: the shared prefix and the request's own."""
        prefix = len(self.tokenizer(request.prefix, add_special_tokens=False).input_ids) if request.prefix else 0
        return prefix + len(self._ids(request))

    def plan(self, requests: list[Request]) -> list[list[int]]:
        """Batches of requests that share sampling and prefix, sorted by length to waste less on padding."""
        lengths = [len(self._ids(r)) for r in requests]
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.sampling, r.raw, r.prefix), []).append(i)
        units = []
        for idx in groups.values():
            idx = sorted(idx, key=lambda i: (lengths[i], i))
            units += [idx[k:k + self.batch_size] for k in range(0, len(idx), self.batch_size)]
        return units

    def run_many(self, jobs):
        """Yield (job index, run's result) for (requests, seed) jobs, one batch after another."""
        for j, (requests, seed) in enumerate(jobs):
            yield j, self.run(requests, seed)

    def _prefix(self, prefix: str):
        if prefix not in self._prefix_cache:
            ids = self.tokenizer(prefix, add_special_tokens=False, return_tensors="pt").input_ids.to(self.model.device)
            self._prefix_cache[prefix] = (ids, self.model(input_ids=ids, use_cache=True).past_key_values)
        return self._prefix_cache[prefix]

    @torch.inference_mode()
    def run(self, requests: list[Request], seed: int) -> Completions:
        """The completions of one batch: requests sharing sampling and prefix."""
        sampling, prefix = requests[0].sampling, requests[0].prefix
        enc = self.tokenizer.pad({"input_ids": [self._ids(r) for r in requests]}, return_tensors="pt").to(self.model.device)
        input_ids, attention_mask, cache = enc.input_ids, enc.attention_mask, None
        if prefix:
            # [prefix][left padding][prompt]: positions come from the attention mask, so the padding in the
            # middle is skipped and every row continues the prefix, whose keys and values are computed once.
            prefix_ids, prefix_cache = self._prefix(prefix)
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(requests))
            input_ids = torch.cat([prefix_ids.repeat(len(requests), 1), input_ids], dim=1)
            attention_mask = torch.cat([torch.ones_like(prefix_ids).repeat(len(requests), 1), attention_mask], dim=1)
        torch.manual_seed(seed)
        greedy = sampling.temperature == 0
        out = self.model.generate(
            # `past_key_values` (renamed `cache` in recent transformers) also works on the 5.20 that vLLM allows
            input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache,
            max_new_tokens=sampling.max_new_tokens, do_sample=not greedy,
            temperature=None if greedy else sampling.temperature, top_p=None if greedy else sampling.top_p,
            top_k=None, pad_token_id=self.tokenizer.pad_token_id,
        )
        new = out[:, input_ids.shape[1]:]
        ended = torch.isin(new, self._eos.to(new.device)).any(dim=1).tolist()
        return Completions(self.tokenizer.batch_decode(new, skip_special_tokens=True),
                           int((new != self.tokenizer.pad_token_id).sum()),
                           [not e and new.shape[1] == sampling.max_new_tokens for e in ended])
