"""A generation request, and the seeds that make generation reproducible.

A request is either chat messages (rendered with the model's chat template; generation stops at the end of
the turn) or a raw completion prompt (no template; the first non-blank line is kept). A raw prompt may name
a `prefix` shared by many requests (a few-shot template).
"""
import hashlib
from dataclasses import dataclass

from ..core.params import Sampling


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
               "sampling": self.sampling.model_dump()}
        return {**key, "sample": self.sample} if self.sample else key
