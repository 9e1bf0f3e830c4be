"""The front every stage generates through: plans units, answers from the cache, runs the rest on a backend.

A backend splits requests into units (a batch for transformers, a request for an API) and generates a unit
from one seed. The unit's cache key covers the backend's identity, the unit's requests and that seed, and
the way requests are grouped into units depends only on the requests: so a rerun, or a run resumed after a
crash, rebuilds the same units and gets the same outputs, from the cache where it can.

A backend has `identity` (a dict), `plan(requests) -> [[request index]]` and `run_many(jobs)`, which yields
(job index, Completions) for jobs of (requests, seed): a completion per request, the new tokens, which
completions stopped at max_new_tokens before they ended (`cut`), and the model id a server reported (a plain
(completions, new tokens) tuple is read as Completions too). A backend that knows its context
length has `context_tokens` and `prompt_tokens(request)`: a request whose prompt and new tokens do not fit
is answered None and counted (`too_long`), never sent, so it cannot fail the batch it would have joined. A
backend that learns it only from its server (HTTP 400) gives None as that request's completion: counted the same.
A backend holding devices may have `close()`.

The cache keeps a unit's completions with their `cut` flags and reported model (a unit cached before they were
kept, a plain list, reads as not cut).
"""
import hashlib
import json
import logging
from collections import Counter
from typing import NamedTuple

from tqdm.auto import tqdm

from .request import Request, derive_seed, first_line

TOO_LONG = "prompt_too_long"
CUT = "cut_at_token_limit"  # a failure reason when cut replies are not kept
log = logging.getLogger(__name__)


class Completions(NamedTuple):
    """A backend's answer to one unit."""
    texts: list  # str per request; None for one over the served context
    new_tokens: int
    cut: list[bool] | None = None  # per request: stopped at max_new_tokens before it ended; None: none was
    model: str | None = None  # the model id the server reported

    def stored(self) -> dict:
        return {"texts": self.texts, "cut": self.cut, "model": self.model}

    @classmethod
    def from_store(cls, value) -> "Completions":
        return cls(value, 0) if isinstance(value, list) else cls(value["texts"], 0, value["cut"], value["model"])


class Generator:
    """The front every stage uses: plans units, answers from the cache, runs the rest on the backend."""

    def __init__(self, backend, cache=None):
        self.backend, self.cache = backend, cache
        self.model_calls = 0
        self.cache_hits = 0
        self.new_tokens = 0
        self.too_long = 0
        self.served_models: set[str] = set()  # the model ids the server reported, for fresh and cached units

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
        return self.generate_with_cuts(requests, seed, desc)[0]

    def generate_with_cuts(self, requests: list[Request], seed: int,
                           desc: str = "generate") -> tuple[list[str | None], list[bool]]:
        """(`generate`'s completions, whether each was cut at its max_new_tokens: a chat answer that had not
        ended, a raw prompt's first line that had not)."""
        kept = [i for i, r in enumerate(requests) if self.fits(r)]
        outputs: list[str | None] = [None] * len(requests)
        cut = [False] * len(requests)
        for i, text, was_cut in zip(kept, *self._generate([requests[i] for i in kept], seed, desc)):
            outputs[i], cut[i] = text, was_cut
        self.too_long += outputs.count(None)
        return outputs, cut

    def _generate(self, requests: list[Request], seed: int, desc: str) -> tuple[list[str | None], list[bool]]:
        if not requests:
            return [], []
        units = self.backend.plan(requests)
        keys = [self._unit_key([requests[i] for i in idx], seed) for idx in units]
        results = [Completions.from_store(value) if self.cache and (value := self.cache.get(key)) is not None
                   else None for key in keys]
        self.cache_hits += sum(len(idx) for idx, result in zip(units, results) if result is not None)
        missing = [u for u, result in enumerate(results) if result is None]
        log.info("%s: %d requests in %d units, %d units from the cache", desc, len(requests), len(units),
                 len(units) - len(missing))
        jobs = [([requests[i] for i in units[u]], derive_seed(keys[u])) for u in missing]
        for j, result in tqdm(self.backend.run_many(jobs), total=len(jobs), desc=desc, unit="batch", leave=True):
            u = missing[j]
            results[u] = result = Completions(*result)
            self.model_calls += len(units[u])
            self.new_tokens += result.new_tokens
            if self.cache and None not in result.texts:  # a server's "too long" may not hold at a larger context
                self.cache.put(keys[u], result.stored())  # committed now: a crash later keeps it
        outputs: list[str | None] = [None] * len(requests)
        cut = [False] * len(requests)
        for idx, result in zip(units, results):
            self.served_models |= {result.model} - {None}
            for i, completion, was_cut in zip(idx, result.texts, result.cut or [False] * len(idx)):
                if completion is None:
                    continue
                if requests[i].raw:  # only the first line is kept: it was cut only if it had not ended
                    was_cut = was_cut and "\n" not in completion.lstrip()
                    completion = first_line(completion)
                outputs[i], cut[i] = completion.strip(), was_cut
        return outputs, cut

    def generate_checked(self, requests: list[Request], check, seed_parts: tuple, retries: int,
                         desc: str = "generate", keep_cut: bool = True
                         ) -> tuple[list[str | None], list[str | None], Counter, list[bool]]:
        """Generate, check each output, and regenerate the failures with a new seed up to `retries` times.
        `check(index, text)` returns (the text to keep, e.g. cleaned, and a failure reason or None). A
        request too long for the context fails at once with reason TOO_LONG (a retry would not fit either); with
        `keep_cut` false, an output cut at its max_new_tokens fails with reason CUT (a new seed may end in time).
        Returns (outputs, None where every attempt failed; the last failure reason per request, None where
        it succeeded; retries by reason; whether each output kept was cut at its max_new_tokens)."""
        outputs, reasons, retried = [None] * len(requests), [None] * len(requests), Counter()
        cut = [False] * len(requests)
        pending = list(range(len(requests)))
        for attempt in range(retries + 1):
            if not pending:
                break
            texts, cuts = self.generate_with_cuts([requests[i] for i in pending],
                                                  seed=derive_seed(*seed_parts, attempt),
                                                  desc=desc + (f" retry {attempt}" if attempt else ""))
            failed = []
            for i, text, was_cut in zip(pending, texts, cuts):
                if text is None:
                    reasons[i] = TOO_LONG
                    continue
                text, reasons[i] = (text, CUT) if was_cut and not keep_cut else check(i, text)
                if reasons[i] is None:
                    outputs[i], cut[i] = text, was_cut
                else:
                    failed.append(i)
                    if attempt < retries:
                        retried[reasons[i]] += 1
            pending = failed
        return outputs, reasons, retried, cut

    def close(self) -> None:
        """Release what the backend holds (a vLLM engine's GPUs, a vLLM server it started), before other models
        load. Called on leaving `with Generator(...)`, also on an error."""
        if hasattr(self.backend, "close"):
            self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
