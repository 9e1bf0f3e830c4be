"""Text generation behind one interface. Backend here: transformers, batched across conversations.

A request is either chat messages (rendered with the model's chat template; generation stops at the
end-of-turn token) or a raw completion prompt (no template; the first non-blank line is kept). A raw
prompt may name a `prefix` shared by many requests (a few-shot template): its keys and values are
computed once and reused, since on a CPU reading the prompt costs more than writing the answer.
"""
import copy
import hashlib
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .params import Sampling


def derive_seed(*parts) -> int:
    """A seed for one generation call or batch; distinct parts give unrelated random streams."""
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16)


def first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


@dataclass(frozen=True)
class Request:
    prompt: str | tuple  # raw completion text (after `prefix`), or a tuple of {"role", "content"} messages
    sampling: Sampling
    prefix: str = ""

    @property
    def raw(self) -> bool:
        return isinstance(self.prompt, str)


class TransformersGenerator:
    def __init__(self, model_dir: str, dtype: str = "bfloat16", batch_size: int = 32):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
        self.batch_size = batch_size
        self.model_calls = 0
        self.new_tokens = 0
        self._prefix_cache: dict[str, tuple[torch.Tensor, object]] = {}

    def _ids(self, request: Request) -> list[int]:
        text = request.prompt if request.raw else self.tokenizer.apply_chat_template(
            list(request.prompt), tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def generate(self, requests: list[Request], seed: int, desc: str = "generate") -> list[str]:
        """Completions in request order. Same requests and seed give the same completions."""
        ids = [self._ids(r) for r in requests]
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.sampling, r.raw, r.prefix), []).append(i)
        batches = []
        for key, idx in groups.items():
            idx = sorted(idx, key=lambda i: (len(ids[i]), i))  # length-sorted batches waste less on padding
            batches += [(key, idx[k:k + self.batch_size]) for k in range(0, len(idx), self.batch_size)]
        outputs = [""] * len(requests)
        for batch_no, ((sampling, raw, prefix), idx) in enumerate(tqdm(batches, desc=desc, unit="batch", leave=False)):
            completions = self._generate_batch([ids[i] for i in idx], prefix, sampling, derive_seed(seed, batch_no))
            for i, completion in zip(idx, completions):
                outputs[i] = first_line(completion) if raw else completion
        return [o.strip() for o in outputs]

    def _prefix(self, prefix: str):
        if prefix not in self._prefix_cache:
            prefix_ids = self.tokenizer(prefix, add_special_tokens=False, return_tensors="pt").input_ids
            self._prefix_cache[prefix] = (prefix_ids, self.model(input_ids=prefix_ids, use_cache=True).past_key_values)
        return self._prefix_cache[prefix]

    @torch.inference_mode()
    def _generate_batch(self, ids: list[list[int]], prefix: str, sampling: Sampling, seed: int) -> list[str]:
        enc = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        input_ids, attention_mask, cache = enc.input_ids, enc.attention_mask, None
        if prefix:
            # [prefix][left padding][prompt]: positions come from the attention mask, so the padding in
            # the middle is skipped and every row continues the cached prefix.
            prefix_ids, prefix_cache = self._prefix(prefix)
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(ids))
            input_ids = torch.cat([prefix_ids.repeat(len(ids), 1), input_ids], dim=1)
            attention_mask = torch.cat([torch.ones_like(prefix_ids).repeat(len(ids), 1), attention_mask], dim=1)
        torch.manual_seed(seed)
        greedy = sampling.temperature == 0
        out = self.model.generate(
            input_ids=input_ids, attention_mask=attention_mask, cache=cache,
            max_new_tokens=sampling.max_new_tokens, do_sample=not greedy,
            temperature=None if greedy else sampling.temperature, top_p=None if greedy else sampling.top_p,
            top_k=None, pad_token_id=self.tokenizer.pad_token_id,
        )
        new = out[:, input_ids.shape[1]:]
        self.model_calls += len(ids)
        self.new_tokens += int((new != self.tokenizer.pad_token_id).sum())
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)
