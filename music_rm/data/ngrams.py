"""Word n-grams of a conversation's user messages: what decontamination compares (evaluation/contamination.py).

Normalisation, in this order: Unicode NFKC (full-width and compatibility forms become their plain letters);
format characters removed (category Cf: zero-width spaces, joiners, byte order marks, bidi marks); lower case
(`str.casefold`); every character that is neither a letter nor a digit (punctuation, symbols, `_`, whitespace)
becomes a space; words are what is left between spaces. So "Write a POEM—about cats!" and "write a poem about
cats" are the same five words. A script written without spaces (Chinese, Japanese) gives one word per run of
letters.

An item's text is its user messages (system messages and answers left out), each message's words in order, one
message after the other. Its keys: every run of `n` consecutive words; a text of fewer than `n` words has one key,
all of its words, so it matches only a text that normalises to exactly the same words (a short prompt inside a
longer one is no match). Two items overlap when they share a key.

Issue 31's conversation.normal_text (NFKC, format characters removed, whitespace collapsed) is the first step
here; `words` is the one place to switch to it once it is in main.
"""
import re
import unicodedata

NOT_A_WORD = re.compile(r"[\W_]+")


def words(text: str) -> list[str]:
    """`text` normalised as the module says, as its words."""
    text = "".join(c for c in unicodedata.normalize("NFKC", text) if unicodedata.category(c) != "Cf")
    return NOT_A_WORD.sub(" ", text.casefold()).split()


def user_texts(*conversations: list[dict]) -> list[str]:
    """The user messages of the conversations, in order, each distinct text once (a pair's two sides share their
    opening)."""
    seen: dict[str, None] = {}
    for messages in conversations:
        for m in messages:
            if m["role"] == "user":
                seen.setdefault(m["content"], None)
    return list(seen)


def keys(texts: list[str], n: int) -> set[str]:
    """The n-gram keys of an item made of `texts` (its user messages), each key its words joined by one space;
    none for a text with no words."""
    tokens = [w for text in texts for w in words(text)]
    if len(tokens) < n:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}
