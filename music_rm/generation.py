"""Text generation behind one interface, with a content-addressed cache in front of every backend.

A request is either chat messages (rendered with the model's chat template; generation stops at the
end of the turn) or a raw completion prompt (no template; the first non-blank line is kept). A raw
prompt may name a `prefix` shared by many requests (a few-shot template).

A backend splits requests into units (a batch for transformers) and generates a unit from one seed.
The unit's cache key covers the backend's identity, the unit's requests and that seed, and the way
requests are grouped into units depends only on the requests: so a rerun, or a run resumed after a
crash, rebuilds the same units and gets the same outputs, from the cache where it can.
"""
import copy
import hashlib
import json
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from .params import Sampling


def derive_seed(*parts) -> int:
    """A seed for one generation call or unit; distinct parts give unrelated random streams."""
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16)


def first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


@dataclass(frozen=True)
class Request:
    prompt: str | tuple  # raw completion text (after `prefix`), or a tuple of {"role", "content"} messages
    sampling: Sampling
    prefix: str = ""
    sample: int = 0  # tells apart several draws of one prompt (Best-of-N candidates)

    @property
    def raw(self) -> bool:
        return isinstance(self.prompt, str)

    def key(self) -> dict:
        key = {"prompt": self.prompt if self.raw else list(self.prompt), "prefix": self.prefix,
               "sampling": asdict(self.sampling)}
        return {**key, "sample": self.sample} if self.sample else key


def model_fingerprint(model_dir: str) -> str:
    """The model's identity in cache keys: its provenance record when it has one (a pinned wheel's sha256,
    a resolved Hub commit), else a hash of every file in the folder."""
    from pathlib import Path

    provenance = Path(model_dir) / "provenance.json"
    if provenance.is_file():
        return hashlib.sha256(provenance.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
        digest.update(path.relative_to(model_dir).as_posix().encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class Generator:
    """The front every stage uses: plans units, answers from the cache, runs the rest on the backend."""

    def __init__(self, backend, cache=None):
        self.backend, self.cache = backend, cache
        self.model_calls = 0
        self.cache_hits = 0
        self.new_tokens = 0

    def _unit_key(self, requests: list[Request], seed: int) -> str:
        payload = {"backend": self.backend.identity, "seed": seed, "requests": [r.key() for r in requests]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def generate(self, requests: list[Request], seed: int, desc: str = "generate") -> list[str]:
        """Completions in request order. Same requests and seed give the same completions."""
        units = self.backend.plan(requests)
        keys = [self._unit_key([requests[i] for i in idx], seed) for idx in units]
        results = [self.cache.get(key) if self.cache else None for key in keys]
        self.cache_hits += sum(len(idx) for idx, result in zip(units, results) if result is not None)
        missing = [u for u, result in enumerate(results) if result is None]
        jobs = [([requests[i] for i in units[u]], derive_seed(keys[u])) for u in missing]
        for j, (completions, new_tokens) in tqdm(self.backend.run_many(jobs), total=len(jobs), desc=desc,
                                                  unit="batch", leave=False):
            u = missing[j]
            results[u] = completions
            self.model_calls += len(units[u])
            self.new_tokens += new_tokens
            if self.cache:
                self.cache.put(keys[u], completions)  # committed now: a crash later keeps it
        outputs = [""] * len(requests)
        for idx, completions in zip(units, results):
            for i, completion in zip(idx, completions):
                outputs[i] = (first_line(completion) if requests[i].raw else completion).strip()
        return outputs


class TransformersBackend:
    """Batched generation on one device; left padding, length-sorted batches, a reused prefix cache."""

    def __init__(self, model_dir: str, dtype: str = "bfloat16", batch_size: int = 32):
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

    def _ids(self, request: Request) -> list[int]:
        text = request.prompt if request.raw else self.tokenizer.apply_chat_template(
            list(request.prompt), tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False).input_ids

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
    def run(self, requests: list[Request], seed: int) -> tuple[list[str], int]:
        """(completions, new tokens) for one batch: requests sharing sampling and prefix."""
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
        return (self.tokenizer.batch_decode(new, skip_special_tokens=True),
                int((new != self.tokenizer.pad_token_id).sum()))


def make_backend(p, model_dir: str, trust_remote_code: bool = False):
    """The backend simulate.backend names; `model_dir` is the base model folder."""
    if p.backend == "transformers":
        return TransformersBackend(model_dir, p.dtype, p.batch_size)
    if p.backend == "vllm":
        from .vllm_backend import VLLMBackend

        v = p.vllm
        backend = VLLMBackend(v.model or model_dir, v.revision, v.tensor_parallel_size, v.max_model_len, p.dtype,
                              v.unit_size, trust_remote_code, v.gpu_memory_utilization)
        if v.model is None:
            backend.identity["model"] = model_fingerprint(model_dir)
        return backend
    from .openai_backend import OpenAIBackend

    o = p.openai
    return OpenAIBackend(o.base_url, o.model, o.api_key_env, o.concurrency, o.timeout_s, o.max_attempts)
