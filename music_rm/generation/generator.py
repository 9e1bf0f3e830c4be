"""The front every stage generates through: plans units, answers from the cache, runs the rest on a backend.

A backend splits requests into units (a batch for transformers, a request for an API) and generates a unit
from one seed. The unit's cache key covers the backend's identity, the unit's requests and that seed, and
the way requests are grouped into units depends only on the requests: so a rerun, or a run resumed after a
crash, rebuilds the same units and gets the same outputs, from the cache where it can.

A backend has `identity` (a dict), `plan(requests) -> [[request index]]` and `run_many(jobs)`, which yields
(job index, (completions, new tokens)) for jobs of (requests, seed). A backend that knows its context
length has `context_tokens` and `prompt_tokens(request)`: a request whose prompt and new tokens do not fit
is answered None and counted (`too_long`), never sent, so it cannot fail the batch it would have joined. A
backend that learns it only from its server (HTTP 400) gives None as that request's completion: counted the same.
A backend holding devices may have `close()`.
"""
import hashlib
import json
import logging
from collections import Counter

from tqdm.auto import tqdm

from .request import Request, derive_seed, first_line

TOO_LONG = "prompt_too_long"
log = logging.getLogger(__name__)


class Generator:
    """The front every stage uses: plans units, answers from the cache, runs the rest on the backend."""

    def __init__(self, backend, cache=None):
        self.backend, self.cache = backend, cache
        self.model_calls = 0
        self.cache_hits = 0
        self.new_tokens = 0
        self.too_long = 0

    def _unit_key(self, requests: list[Request], seed: int) -> str:
        payload = {"backend": self.backend.identity, "seed": seed, "requests": [r.key() for r in requests]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def fits(self, request: Request) -> bool:
        """Whether the prompt and the new tokens fit the backend's context (when it has one)."""
        limit = getattr(self.backend, "context_tokens", None)
        return limit is None or self.backend.prompt_tokens(request) + request.sampling.max_new_tokens <= limit

    def generate(self, requests: list[Request], seed: int, desc: str = "generate") -> list[str | None]:
        """Completions in request order, None for a request too long for the backend's context. Same requests
        and seed give the same completions."""
        kept = [i for i, r in enumerate(requests) if self.fits(r)]
        outputs: list[str | None] = [None] * len(requests)
        for i, text in zip(kept, self._generate([requests[i] for i in kept], seed, desc)):
            outputs[i] = text
        self.too_long += outputs.count(None)
        return outputs

    def _generate(self, requests: list[Request], seed: int, desc: str) -> list[str | None]:
        if not requests:
            return []
        units = self.backend.plan(requests)
        keys = [self._unit_key([requests[i] for i in idx], seed) for idx in units]
        results = [self.cache.get(key) if self.cache else None for key in keys]
        self.cache_hits += sum(len(idx) for idx, result in zip(units, results) if result is not None)
        missing = [u for u, result in enumerate(results) if result is None]
        log.info("%s: %d requests in %d units, %d units from the cache", desc, len(requests), len(units),
                 len(units) - len(missing))
        jobs = [([requests[i] for i in units[u]], derive_seed(keys[u])) for u in missing]
        for j, (completions, new_tokens) in tqdm(self.backend.run_many(jobs), total=len(jobs), desc=desc,
                                                  unit="batch", leave=True):
            u = missing[j]
            results[u] = completions
            self.model_calls += len(units[u])
            self.new_tokens += new_tokens
            if self.cache and None not in completions:  # a server's "too long" may not hold at a larger context
                self.cache.put(keys[u], completions)  # committed now: a crash later keeps it
        outputs: list[str | None] = [None] * len(requests)
        for idx, completions in zip(units, results):
            for i, completion in zip(idx, completions):
                if completion is not None:
                    outputs[i] = (first_line(completion) if requests[i].raw else completion).strip()
        return outputs

    def generate_checked(self, requests: list[Request], check, seed_parts: tuple, retries: int,
                         desc: str = "generate") -> tuple[list[str | None], list[str | None], Counter]:
        """Generate, check each output, and regenerate the failures with a new seed up to `retries` times.
        `check(index, text)` returns (the text to keep, e.g. cleaned, and a failure reason or None). A
        request too long for the context fails at once with reason TOO_LONG (a retry would not fit either).
        Returns (outputs, None where every attempt failed; the last failure reason per request, None where
        it succeeded; retries by reason)."""
        outputs, reasons, retried = [None] * len(requests), [None] * len(requests), Counter()
        pending = list(range(len(requests)))
        for attempt in range(retries + 1):
            if not pending:
                break
            texts = self.generate([requests[i] for i in pending], seed=derive_seed(*seed_parts, attempt),
                                  desc=desc + (f" retry {attempt}" if attempt else ""))
            failed = []
            for i, text in zip(pending, texts):
                if text is None:
                    reasons[i] = TOO_LONG
                    continue
                text, reasons[i] = check(i, text)
                if reasons[i] is None:
                    outputs[i] = text
                else:
                    failed.append(i)
                    if attempt < retries:
                        retried[reasons[i]] += 1
            pending = failed
        return outputs, reasons, retried

    def close(self) -> None:
        """Release what the backend holds (a vLLM engine's GPUs, a vLLM server it started), before other models
        load. Called on leaving `with Generator(...)`, also on an error."""
        if hasattr(self.backend, "close"):
            self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
