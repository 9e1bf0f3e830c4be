"""Kinds of bad input rows, each with the exact outcome fetch must give.

Each case is a .jsonl file whose row 1 is a good pair, whose row 2 (line 2) is the bad one and whose row 3 is
a good pair with a prompt of the other split (fetch refuses a split left empty); the empty file has no rows. `error`: (row, field, start of the message) with on_invalid=fail; `skip`: the reason
counted with on_invalid=skip, or None where even skip must stop (nothing valid is left).
"""
import json
from dataclasses import dataclass


def msg(role, content):
    return {"role": role, "content": content}


GOOD = {"chosen": [msg("user", "Name a colour."), msg("assistant", "Blue.")],
        "rejected": [msg("user", "Name a colour."), msg("assistant", "Seven.")]}
GOOD_HH = {"chosen": "\n\nHuman: Name a colour.\n\nAssistant: Blue.",
           "rejected": "\n\nHuman: Name a colour.\n\nAssistant: Seven."}  # an HH file's good row
# row 3: "Name a colour." goes to the test split (test_fraction 0.3), "Name a fruit." to train
OTHER_SPLIT = {"chosen": [msg("user", "Name a fruit."), msg("assistant", "Pear.")],
               "rejected": [msg("user", "Name a fruit."), msg("assistant", "Soup.")]}
OTHER_SPLIT_HH = {"chosen": "\n\nHuman: Name a fruit.\n\nAssistant: Pear.",
                  "rejected": "\n\nHuman: Name a fruit.\n\nAssistant: Soup."}
MAX_CHARS = 1000


def pair(chosen=None, rejected=None, **extra):
    return {"chosen": chosen if chosen is not None else [msg("user", "Q?"), msg("assistant", "A.")],
            "rejected": rejected if rejected is not None else [msg("user", "Q?"), msg("assistant", "B.")], **extra}


def replace_message(i, **fields):
    conversation = [msg("user", "Q?"), msg("assistant", "A.")]
    conversation[i] = {**conversation[i], **fields}
    return pair(chosen=conversation)


@dataclass
class Case:
    kind: str
    line: bytes | None  # line 2 of the file; None: an empty file
    error: tuple
    skip: str | None


def dump(row) -> bytes:
    return json.dumps(row).encode()


CASES = [
    Case("broken JSON line", b'{"chosen": [', (2, None, "broken JSON line"), "line: broken JSON line"),
    Case("invalid UTF-8", b'{"chosen": "\xff\xfe"}', (2, None, "invalid UTF-8"), "line: invalid UTF-8"),
    Case("row is not an object", b"[1, 2]", (2, None, "expected a JSON object, got list"),
         "line: expected a JSON object, got list"),
    Case("row is null", b"null", (2, None, "expected a JSON object, got NoneType"),
         "line: expected a JSON object, got NoneType"),
    Case("missing field", dump({"chosen": GOOD["chosen"]}), (2, "rejected", "missing"), "rejected: missing"),
    Case("wrong type: conversation", dump(pair(chosen=42)), (2, "chosen", "expected a list of messages, got int"),
         "chosen: expected a list of messages, got int"),
    Case("empty conversation", dump(pair(chosen=[])), (2, "chosen", "empty conversation"), "chosen: empty conversation"),
    Case("message is not an object", dump(pair(chosen=["hi", msg("assistant", "A.")])),
         (2, "chosen[0]", "expected a message object, got str"), "chosen: expected a message object, got str"),
    Case("message missing a field", dump(pair(chosen=[{"role": "user"}, msg("assistant", "A.")])),
         (2, "chosen[0]", "missing key(s) ['content']"), "chosen: missing key(s) ['content']"),
    Case("message with an extra field", dump(replace_message(1, name="bot")),
         (2, "chosen[1]", "unexpected key(s) ['name']"), "chosen: unexpected key(s) ['name']"),
    Case("unknown role", dump(replace_message(1, role="gpt")), (2, "chosen[1].role", "unknown role 'gpt'"),
         "chosen: unknown role 'gpt' (expected one of system, user, assistant)"),
    Case("wrong type: content", dump(replace_message(1, content=["A."])),
         (2, "chosen[1].content", "expected a string, got list"), "chosen: expected a string, got list"),
    Case("empty content", dump(replace_message(1, content="  \n")), (2, "chosen[1].content", "empty content"),
         "chosen: empty content"),
    Case("huge content", dump(replace_message(1, content="x" * (MAX_CHARS + 1))),
         (2, "chosen[1].content", f"longer than the limit of {MAX_CHARS} characters"),
         f"chosen: longer than the limit of {MAX_CHARS} characters"),
    Case("non-alternating roles", dump(pair(chosen=[msg("user", "Q?"), msg("user", "Q2?"), msg("assistant", "A.")])),
         (2, "chosen[1].role", "roles must alternate"),
         "chosen: roles must alternate user/assistant: expected 'assistant', got 'user'"),
    Case("system message mid-conversation",
         dump(pair(chosen=[msg("user", "Q?"), msg("system", "Be brief."), msg("assistant", "A.")])),
         (2, "chosen[1].role", "a system message is allowed only as the first message"),
         "chosen: a system message is allowed only as the first message"),
    Case("conversation not ending with the assistant", dump(pair(chosen=[msg("user", "Q?")])),
         (2, "chosen[0].role", "a conversation must end with an assistant message"),
         "chosen: a conversation must end with an assistant message"),
    Case("chosen equal to rejected", dump(pair(rejected=pair()["chosen"])),
         (2, "rejected", "identical to chosen (whitespace aside)"), "rejected: identical to chosen (whitespace aside)"),
    Case("different prompts", dump(pair(rejected=[msg("user", "Other?"), msg("assistant", "B.")])),
         (2, "rejected", "chosen and rejected have different prompts"),
         "rejected: chosen and rejected have different prompts (history up to the last user message)"),
    Case("HH string with text before the first turn", dump({"chosen": "Hi\n\nHuman: Q?\n\nAssistant: A.",
                                                         "rejected": "\n\nHuman: Q?\n\nAssistant: B."}),
         (2, "chosen", "text before the first 'Human:' turn"), "chosen: text before the first 'Human:' turn"),
    Case("wrong type: source", dump(pair(source=["magpie"])), (2, "source", "expected a string, got list"),
         "source: expected a string, got list"),
    Case("wrong type: id", dump(pair(id={"n": 1})), (2, "id", "expected a string or integer, got dict"),
         "id: expected a string or integer, got dict"),
    Case("duplicate id", dump(pair(id="a")), (2, "id", "duplicate id: an earlier row (row 1) has another pair"),
         "id: duplicate id: an earlier row (row 1) has another pair"),
    Case("chosen equal to rejected but for whitespace", dump(pair(rejected=[msg("user", "Q?"), msg("assistant", " A.  ")])),
         (2, "rejected", "identical to chosen (whitespace aside)"), "rejected: identical to chosen (whitespace aside)"),
    Case("NUL character", dump(pair(chosen=[msg("user", "Q?"), msg("assistant", "A\u0000.")])),
         (2, "chosen[1].content", "contains a NUL character"), "chosen: contains a NUL character"),
    Case("message with a filled optional key", dump(pair(chosen=[{**msg("user", "Q?"), "name": "bob"},
                                                                 msg("assistant", "A.")])),
         (2, "chosen[0]", "unexpected key(s) ['name']"), "chosen: unexpected key(s) ['name']"),
    Case("duplicate pair", dump(GOOD), None, "duplicate pair"),
    Case("empty file", None, (None, None, "empty file: no rows"), None),
]
# Answers that show nothing: invisible characters are as empty as whitespace (issue 23).
CASES += [
    Case("invisible-only content", dump(replace_message(1, content="\u200b\u2060\ufeff")),
         (2, "chosen[1].content", "empty content"), "chosen: empty content"),
    Case("joiners and whitespace only", dump(replace_message(1, content=" \u200c\u200d\n\u00ad")),
         (2, "chosen[1].content", "empty content"), "chosen: empty content"),
]


def write_case(case: Case, path) -> None:
    first = dump({**GOOD, "id": "a"} if case.kind == "duplicate id" else GOOD_HH if case.kind.startswith("HH") else GOOD)
    third = dump(OTHER_SPLIT_HH if case.kind.startswith("HH") else OTHER_SPLIT)
    path.write_bytes(b"" if case.line is None else first + b"\n" + case.line + b"\n" + third + b"\n")
