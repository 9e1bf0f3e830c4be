"""Preference formats users have, converted once into the one schema here (`chosen` and `rejected` as lists
of {"role", "content"}).

| format | a row |
|---|---|
| `schema` | `chosen`, `rejected`: message lists (this repo's schema; Skywork's rows have the same shape; TRL's conversational format with an implicit prompt) |
| `hh` | `chosen`, `rejected`: Anthropic HH transcripts, "\\n\\nHuman: … \\n\\nAssistant: …" |
| `trl_prompt` | TRL's standard format with an explicit prompt: `prompt`, `chosen`, `rejected` as strings |
| `trl_conversational` | TRL's conversational format with an explicit prompt: `prompt` a message list, `chosen` and `rejected` the assistant's messages |
| `ultrafeedback_binarized` | UltraFeedback binarized (HuggingFaceH4's columns): `prompt` a string, `chosen` and `rejected` full message lists that start with the user's `prompt`; `prompt_id`, `messages`, `score_chosen`, `score_rejected` are not read |
| `sharegpt` | LLaMA-Factory's sharegpt DPO: `conversations` as `{from, value}` turns (system, human, gpt), `chosen` and `rejected` as `{from: gpt, value}`; an optional `system` string |

TRL's standard format with an implicit prompt (`chosen`, `rejected` as plain strings) has no turn markers
to split on, except as HH transcripts: such a row is read as `hh`. `auto` detects the format from a file's
first row that is an object, and names it in fetch's summary.

A message's content given as OpenAI-style parts (`[{"type": "text", "text": …}, …]`, the Responses API's
`input_text` and `output_text` too) is flattened to one string, the parts' texts joined by "\\n" as vLLM joins
them (vllm/renderers/chat_utils.py); a part of any other type (an image, audio, a file) is refused by name.

Keys whose value is null are dropped first: a Parquet writer fills every optional key of every row with
null, and that is no content. A key that holds content where the schema has none (a message's `name` or
`tool_calls`) stays and is reported on the row that has it.
"""
from .conversation import SchemaError, from_hh

TEXT_PARTS = ("text", "input_text", "output_text")
FORMATS = ("schema", "hh", "trl_prompt", "trl_conversational", "ultrafeedback_binarized", "sharegpt")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def drop_nulls(value):
    """`value` with every null-valued key removed, at any depth."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def detect(raw) -> str | None:
    """The format of a raw row, by its keys and types; None when it matches none."""
    if not isinstance(raw, dict):
        return None
    if "conversations" in raw:
        return "sharegpt"
    if "prompt" in raw:
        if isinstance(raw["prompt"], list):
            return "trl_conversational"
        return "ultrafeedback_binarized" if isinstance(raw.get("chosen"), list) else "trl_prompt"
    if isinstance(raw.get("chosen"), str):
        return "hh"
    if isinstance(raw.get("chosen"), list):
        return "schema"
    return None


def describe(raw, width: int = 160) -> str:
    """A short picture of a row for an error message: its keys and the types of their values."""
    if not isinstance(raw, dict):
        return f"a {type(raw).__name__}"
    text = "{" + ", ".join(f"{k!r}: {type(v).__name__}" for k, v in raw.items()) + "}"
    return text if len(text) <= width else text[: width - 1] + "…"


def _messages(value, field: str) -> list:
    if not isinstance(value, list):
        raise SchemaError(field, f"expected a list of messages, got {type(value).__name__}")
    return [flatten_parts(m, f"{field}[{i}]") for i, m in enumerate(value)]


def flatten_parts(message, field: str):
    """`message` with content given as a list of text parts joined into one string (the module docstring); any
    other message as it is (the schema check reports what is wrong with it)."""
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return message
    texts = []
    for j, part in enumerate(message["content"]):
        where = f"{field}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS:
            got = f"a part of type {kind!r}" if isinstance(kind, str) else f"a {type(part).__name__} without a type"
            raise SchemaError(where, f"{got}: only text parts ({', '.join(TEXT_PARTS)}) can be read")
        if not isinstance(part.get("text"), str):
            raise SchemaError(f"{where}.text", f"expected a string, got {type(part.get('text')).__name__}")
        texts.append(part["text"])
    return {**message, "content": "\n".join(texts)}


def _text(value, field: str) -> str:
    if not isinstance(value, str):
        raise SchemaError(field, f"expected a string, got {type(value).__name__}")
    return value


def _sharegpt_turn(turn, field: str) -> dict:
    if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
        raise SchemaError(field, "expected a {from, value} turn")
    if turn["from"] not in SHAREGPT_ROLES:
        raise SchemaError(f"{field}.from", f"unknown speaker {turn['from']!r} (expected system, human or gpt)")
    return {"role": SHAREGPT_ROLES[turn["from"]], "content": _text(turn["value"], f"{field}.value")}


def convert(raw: dict, fmt: str) -> dict:
    """{"chosen", "rejected"} message lists of one raw row of format `fmt`; raises SchemaError naming the field."""
    if fmt == "schema":
        return {f: _messages(raw.get(f), f) if f in raw else _missing(f) for f in ("chosen", "rejected")}
    if fmt == "hh":
        return {f: from_hh(raw[f], f) if f in raw else _missing(f) for f in ("chosen", "rejected")}
    if fmt == "trl_prompt":
        prompt = [{"role": "user", "content": _text(raw.get("prompt"), "prompt")}]
        return {f: prompt + [{"role": "assistant", "content": _text(raw[f], f) if f in raw else _missing(f)}]
                for f in ("chosen", "rejected")}
    if fmt == "trl_conversational":
        prompt = _messages(raw.get("prompt"), "prompt")
        return {f: prompt + _messages(raw[f], f) if f in raw else _missing(f) for f in ("chosen", "rejected")}
    if fmt == "ultrafeedback_binarized":
        prompt = _text(raw.get("prompt"), "prompt")
        pair = {f: _messages(raw[f], f) if f in raw else _missing(f) for f in ("chosen", "rejected")}
        for f, messages in pair.items():
            first = messages[0] if messages else None
            if not isinstance(first, dict) or first.get("role") != "user" or first.get("content") != prompt:
                raise SchemaError(f"{f}[0]", "expected the user's message holding the row's prompt")
        return pair
    if fmt == "sharegpt":
        turns = [_sharegpt_turn(t, f"conversations[{i}]")
                 for i, t in enumerate(_messages(raw.get("conversations"), "conversations"))]
        if "system" in raw:
            turns = [{"role": "system", "content": _text(raw["system"], "system")}] + turns
        return {f: turns + [_sharegpt_turn(raw[f], f)] if f in raw else _missing(f) for f in ("chosen", "rejected")}
    raise ValueError(f"unknown format {fmt!r}")


def _missing(field: str):
    raise SchemaError(field, "missing")
