"""Prompt sets: the conversations that start Best-of-N rollouts, from a file.

A prompt is a conversation up to and including its last user message. Formats:
- `schema`: preference pairs of the schema here (`chosen` as a message list); the prompt is the chosen
  conversation up to its last user message (fetch's outputs are such files);
- `hh`: Anthropic HH-RLHF rows (`chosen` as a "\\n\\nHuman: … \\n\\nAssistant: …" string), the paper's first set;
- `ultrainteract`: openbmb/UltraInteract_pair rows, whose `trajectory` is the conversation so far as a list of
  `{"from": "user"|"assistant", "value": str}` ending with the user's turn, the paper's second set;
- `auto`: `trajectory` → ultrainteract, `chosen` as a string → hh, else schema.
With `limit`, `limit` of the distinct prompts are drawn at random with a seed (the first rows of a file are often
one topic or one source), and kept in file order. A row whose prompt breaks the schema (real
data has them: an empty turn, a role out of turn) is skipped and counted by reason.
"""
import random
from collections import Counter

from ..core.errors import InputError
from .conversation import SchemaError, from_hh, prompt_hash, prompt_of, validate_conversation
from .sources import read_rows

ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}


def from_trajectory(trajectory) -> list[dict]:
    """UltraInteract's `trajectory` as messages."""
    if not isinstance(trajectory, list) or not trajectory:
        raise SchemaError("trajectory", "expected a non-empty list of {from, value} turns")
    messages = []
    for i, turn in enumerate(trajectory):
        if not isinstance(turn, dict) or turn.get("from") not in ROLES or not isinstance(turn.get("value"), str):
            raise SchemaError(f"trajectory[{i}]", "expected {from: user|assistant, value: string}")
        messages.append({"role": ROLES[turn["from"]], "content": turn["value"]})
    return messages


def prompt_of_row(raw, fmt: str) -> list[dict]:
    """The prompt of one raw row; raises SchemaError naming the field."""
    if not isinstance(raw, dict):
        raise SchemaError("row", f"expected an object, got {type(raw).__name__}")
    if fmt == "auto":
        fmt = "ultrainteract" if "trajectory" in raw else "hh" if isinstance(raw.get("chosen"), str) else "schema"
    if fmt == "ultrainteract":
        field, prompt = "trajectory", from_trajectory(raw.get("trajectory"))
        if prompt[-1]["role"] != "user":
            raise SchemaError(f"trajectory[{len(prompt) - 1}]", "the conversation must end with the user's turn")
    else:
        if "chosen" not in raw:
            raise SchemaError("chosen", "missing")
        field = "chosen"
        messages = from_hh(raw["chosen"], "chosen") if fmt == "hh" else raw["chosen"]
        if not isinstance(messages, list) or not any(isinstance(m, dict) and m.get("role") == "user" for m in messages):
            raise SchemaError("chosen", "expected a conversation with a user message")
        prompt = prompt_of(messages)
    validate_conversation(prompt + [{"role": "assistant", "content": "-"}], field)  # the prompt, not what follows
    return prompt


def read_prompts(path: str, fmt: str, limit: int | None, seed: int) -> tuple[list[tuple[str, list[dict]]], Counter]:
    """((id, prompt) of `limit` distinct prompts drawn with `seed`, or of all, in file order; rows skipped by
    reason) of a file (.jsonl, .json, .parquet, gzipped or not)."""
    prompts, seen, skipped = [], set(), Counter()
    for row_no, raw in read_rows(path):
        if isinstance(raw, InputError):
            skipped[raw.reason.split(" (")[0]] += 1
            continue
        try:
            prompt = prompt_of_row(raw, fmt)
        except SchemaError as e:
            skipped[f"{e.field.split('[')[0]}: {e.reason}"] += 1
            continue
        key = prompt_hash(prompt)
        if key not in seen:
            seen.add(key)
            prompts.append((key[:16], prompt))
    if not prompts:
        raise InputError(path, None, None, f"no valid prompts ({sum(skipped.values())} rows skipped: {dict(skipped)})")
    return draw(prompts, limit, seed), skipped


def draw(items: list, limit: int | None, seed: int) -> list:
    """`limit` items drawn at random with `seed`, kept in their order; all of them without a limit."""
    if not limit or limit >= len(items):
        return items
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), limit))]
