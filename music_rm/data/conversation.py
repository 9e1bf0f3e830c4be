"""The one conversation schema: a list of {"role", "content"} messages; preference rows hold two of them.

A preference row is {"id", "source", "chosen", "rejected"}. Its prompt is the shared prefix of both
conversations up to and including the last user message; what follows differs.
"""
import hashlib
import json
import re
import unicodedata

from ..core.errors import InputError
from ..core.io import iter_jsonl

ROLES = ("system", "user", "assistant")
# Characters that show nothing and are neither whitespace nor Unicode format characters (category Cf: zero-width
# space, joiners, word joiner, byte order mark, soft hyphen, bidi marks): combining grapheme joiner, Hangul
# fillers, braille blank.
BLANK = frozenset("\u034f\u115f\u1160\u3164\uffa0\u2800")


class SchemaError(ValueError):
    """A row that breaks the schema; `field` names where (e.g. "chosen[2].role")."""

    def __init__(self, field: str, message: str):
        self.field, self.reason = field, message
        super().__init__(f"field '{field}': {message}")


def canonical_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()


def is_blank(text: str) -> bool:
    """Whether `text` shows nothing: only whitespace and invisible characters, or nothing at all."""
    return all(c.isspace() or c in BLANK or unicodedata.category(c) == "Cf" for c in text)


def validate_conversation(messages, field: str, max_chars: int | None = None) -> None:
    if not isinstance(messages, list):
        raise SchemaError(field, f"expected a list of messages, got {type(messages).__name__}")
    if not messages:
        raise SchemaError(field, "empty conversation")
    expected = "user"
    for i, message in enumerate(messages):
        where = f"{field}[{i}]"
        if not isinstance(message, dict):
            raise SchemaError(where, f"expected a message object, got {type(message).__name__}")
        missing = {"role", "content"} - message.keys()
        if missing:
            raise SchemaError(where, f"missing key(s) {sorted(missing)}")
        extra = message.keys() - {"role", "content"}
        if extra:
            raise SchemaError(where, f"unexpected key(s) {sorted(extra)}")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise SchemaError(f"{where}.role", f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
        if not isinstance(content, str):
            raise SchemaError(f"{where}.content", f"expected a string, got {type(content).__name__}")
        if is_blank(content):
            raise SchemaError(f"{where}.content", "empty content")
        if "\x00" in content:
            raise SchemaError(f"{where}.content", "contains a NUL character")
        if max_chars and len(content) > max_chars:
            raise SchemaError(f"{where}.content", f"longer than the limit of {max_chars} characters")
        if role == "system":
            if i != 0:
                raise SchemaError(f"{where}.role", "a system message is allowed only as the first message")
            continue
        if role != expected:
            raise SchemaError(f"{where}.role", f"roles must alternate user/assistant: expected {expected!r}, got {role!r}")
        expected = "assistant" if role == "user" else "user"
    if messages[-1]["role"] != "assistant":
        raise SchemaError(f"{field}[{len(messages) - 1}].role", "a conversation must end with an assistant message")


def same_text(a: list[dict], b: list[dict]) -> bool:
    """Whether two conversations are the same once runs of whitespace count as one space."""
    norm = lambda messages: [(m["role"], " ".join(m["content"].split())) for m in messages]  # noqa: E731
    return norm(a) == norm(b)


def shared_prefix_length(a: list[dict], b: list[dict]) -> int:
    """How many leading messages two conversations share (a pair's common context)."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def length_difference(chosen: list[dict], rejected: list[dict]) -> int:
    """Characters of the assistant messages after the part both conversations share, chosen minus rejected: the
    length a pair is judged on (records.py's `length`; "the longer answer wins" is its sign)."""
    start = shared_prefix_length(chosen, rejected)
    return (sum(len(m["content"]) for m in chosen[start:] if m["role"] == "assistant")
            - sum(len(m["content"]) for m in rejected[start:] if m["role"] == "assistant"))


def prompt_of(messages: list[dict]) -> list[dict]:
    """Messages up to and including the last user message."""
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    return messages[: last_user + 1]


def validate_pair(row: dict, max_chars: int | None = None, shared_prompt: bool = True) -> None:
    """A preference row's two conversations; `shared_prompt`: both share everything up to the last user
    message (seed data). MUSIC pairs share only their opening and differ across several turns."""
    if not isinstance(row, dict):
        raise SchemaError("row", f"expected an object, got {type(row).__name__}")
    for field in ("chosen", "rejected"):
        if field not in row:
            raise SchemaError(field, "missing")
        validate_conversation(row[field], field, max_chars)
    if shared_prompt and prompt_of(row["chosen"]) != prompt_of(row["rejected"]):
        raise SchemaError("rejected", "chosen and rejected have different prompts (history up to the last user message)")
    if same_text(row["chosen"], row["rejected"]):
        raise SchemaError("rejected", "identical to chosen (whitespace aside)")


def read_pairs(path) -> list[dict]:
    """Preference rows of a jsonl file that enters a stage (original or MUSIC pairs), each checked."""
    rows = []
    for row_no, row in iter_jsonl(path):
        if isinstance(row, InputError):
            raise row
        try:
            validate_pair(row, shared_prompt=False)
        except SchemaError as e:
            raise InputError(path, row_no, e.field, e.reason) from None
        rows.append(row)
    return rows


def pair_id(chosen: list[dict], rejected: list[dict]) -> str:
    return canonical_hash({"chosen": chosen, "rejected": rejected})[:16]


def prompt_hash(messages: list[dict]) -> str:
    return canonical_hash(prompt_of(messages))


_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")


def from_hh(text: str, field: str) -> list[dict]:
    """Anthropic HH-RLHF's "\\n\\nHuman: … \\n\\nAssistant: …" string as messages."""
    if not isinstance(text, str):
        raise SchemaError(field, f"expected an HH string, got {type(text).__name__}")
    parts = _HH_TURN.split(text)
    if parts[0].strip():
        raise SchemaError(field, "text before the first 'Human:' turn")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[speaker], "content": content.strip()} for speaker, content in zip(parts[1::2], parts[2::2])]


def fold_system(messages: list[dict]) -> list[dict]:
    """A leading system message folded into the first user message, for chat templates without a system
    role (Gemma-2's raises on one)."""
    if not messages or messages[0]["role"] != "system":
        return messages
    system, first, *rest = messages
    return [{"role": "user", "content": f"{system['content']}\n\n{first['content']}"}, *rest]


def render(messages: list[dict], max_chars: int | None = None) -> str:
    """A plain "User: …/Assistant: …" transcript, each message optionally clipped to its last `max_chars`."""
    lines = []
    for m in messages:
        if m["role"] == "system":
            continue
        text = " ".join(m["content"].split())
        if max_chars and len(text) > max_chars:
            text = "…" + text[-max_chars:]
        lines.append(f"{m['role'].capitalize()}: {text}")
    return "\n".join(lines)
