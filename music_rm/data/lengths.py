"""The one length rule of training and scoring: a conversation over `max_length` tokens (through the model's chat
template) loses its oldest whole (user, assistant) exchanges first.

What is kept: the template's start (a leading system message, the BOS token), and the turns that are judged: in
a preference pair, the last user message both conversations share and every contrasted turn after it; in a
conversation that is scored, its last user message and the answer after it. A training pair that still does not
fit is dropped (with `truncation: truncate_oldest`; `drop` drops any pair over the limit), and counted; a scored
conversation that still does not fit keeps the template's start and its last tokens, where the reward is read.
The contrast stage counts with the same functions how many MUSIC pairs will train.
"""
from .chat_template import token_ids
from .conversation import shared_prefix_length


def drop_oldest_exchange(messages: list[dict], keep_from: int) -> list[dict] | None:
    """`messages` without its oldest (user, assistant) exchange, keeping a leading system message and every
    message from index `keep_from` on; None when no whole exchange is left before `keep_from`."""
    start = 1 if messages and messages[0]["role"] == "system" else 0
    if start + 2 > keep_from or messages[start]["role"] != "user":
        return None
    return messages[:start] + messages[start + 2:]


def drop_oldest_shared_exchange(chosen: list[dict], rejected: list[dict]) -> tuple[list, list] | None:
    """Both conversations of a pair without their oldest shared exchange, keeping the last shared user message
    and everything after the shared part (the contrasted turns); None when no such exchange is left."""
    keep_from = shared_prefix_length(chosen, rejected) - 1
    smaller = drop_oldest_exchange(chosen, keep_from), drop_oldest_exchange(rejected, keep_from)
    return None if None in smaller else smaller


def pair_ids(tokenizer, pair: dict, max_length: int, truncation: str) -> tuple[tuple | None, bool, int]:
    """(the chosen and rejected token ids that train, or None when the pair is dropped; whether oldest exchanges
    were removed; the longer conversation's tokens before that) of one pair under `truncation`."""
    chosen, rejected = pair["chosen"], pair["rejected"]
    ids = token_ids(tokenizer, chosen), token_ids(tokenizer, rejected)
    longest, shortened = max(map(len, ids)), False
    while max(map(len, ids)) > max_length and truncation == "truncate_oldest":
        smaller = drop_oldest_shared_exchange(chosen, rejected)
        if smaller is None:
            break
        chosen, rejected = smaller
        ids, shortened = (token_ids(tokenizer, chosen), token_ids(tokenizer, rejected)), True
    return (ids if max(map(len, ids)) <= max_length else None), shortened, longest


def tokenize_pairs(tokenizer, pairs: list[dict], max_length: int, truncation: str) -> tuple[list[dict], dict]:
    """Token ids per pair that fits max_length (after truncation under the policy); the rest counted."""
    rows, too_long, truncated, longest = [], 0, 0, 0
    for pair in pairs:
        ids, shortened, length = pair_ids(tokenizer, pair, max_length, truncation)
        longest = max(longest, length)
        if ids is None:
            too_long += 1
            continue
        truncated += shortened
        rows.append({"chosen_ids": ids[0], "rejected_ids": ids[1], "length": max(map(len, ids))})
    return rows, {"pairs": len(pairs), "pairs_used": len(rows), "pairs_dropped_too_long": too_long,
                  "pairs_truncated": truncated, "truncation": truncation, "longest_tokens": longest,
                  "max_length": max_length}


def template_start(tokenizer, messages: list[dict]) -> int:
    """How many leading tokens the template puts before the first user message's own text (BOS, a system
    message, the first turn's header): the common start of the conversation rendered with two different first
    user messages."""
    start = 1 if messages and messages[0]["role"] == "system" else 0
    probes = [token_ids(tokenizer, messages[:start] + [{"role": "user", "content": text}]) for text in ("A", "B")]
    return shared_prefix_length(*probes)


def truncated_share(tokenizer, conversations: list[list[dict]], max_length: int | None) -> float:
    """The share of `conversations` over `max_length` tokens, which a reward model scores shortened
    (`conversation_ids`); 0 for none."""
    return round(sum(conversation_ids(tokenizer, c, max_length)[1] for c in conversations) / len(conversations), 4) \
        if conversations else 0.0


def conversations_truncated(tokenizer, conversations: list[list[dict]], max_length: int | None) -> dict:
    """{max_length, share}: the share of `conversations` scored shortened (`truncated_share`)."""
    return {"max_length": max_length, "share": truncated_share(tokenizer, conversations, max_length)}


def pairs_truncated(tokenizer, pairs: list[dict], max_length: int | None) -> dict:
    """{max_length, share}: the share of the pairs' conversations (both sides) scored shortened."""
    return conversations_truncated(tokenizer, [p[side] for p in pairs for side in ("chosen", "rejected")], max_length)


def conversation_ids(tokenizer, messages: list[dict], max_length: int | None) -> tuple[list[int], bool]:
    """(the token ids scored for a conversation under the rule, whether it was shortened)."""
    ids = token_ids(tokenizer, messages)
    if not max_length or len(ids) <= max_length:
        return ids, False
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=0)
    while len(ids) > max_length and (smaller := drop_oldest_exchange(messages, last_user)) is not None:
        messages, last_user = smaller, last_user - 2
        ids = token_ids(tokenizer, messages)
    if len(ids) > max_length:
        head = min(template_start(tokenizer, messages), max_length // 2)  # the judged answer keeps half or more
        ids = ids[:head] + ids[len(ids) - (max_length - head):]
    return ids, True
