"""Conversations as a model's chat template takes them, and as its token ids.

A template without a system role (Gemma-2's raises on one; some drop it silently) gets a leading system
message folded into the first user message, the same way wherever a conversation meets a template:
training, scoring, and generation through transformers, vLLM or a server that says it has no system role.
"""
from .conversation import fold_system


def accepts_system_role(tokenizer) -> bool:
    """Whether the chat template renders a system message."""
    known = getattr(tokenizer, "_music_accepts_system", None)
    if known is None:
        probe = [{"role": "system", "content": "SYSTEM-PROBE"}, {"role": "user", "content": "hi"}]
        try:
            known = "SYSTEM-PROBE" in tokenizer.apply_chat_template(probe, tokenize=False)
        except Exception:  # jinja2's TemplateError from raise_exception, or whatever a template raises
            known = False
        tokenizer._music_accepts_system = known
    return known


def for_template(tokenizer, messages: list[dict]) -> list[dict]:
    """`messages` as this tokenizer's chat template takes them."""
    if messages and messages[0]["role"] == "system" and not accepts_system_role(tokenizer):
        return fold_system(messages)
    return list(messages)


def token_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The token ids of a conversation through the tokenizer's chat template."""
    text = tokenizer.apply_chat_template(for_template(tokenizer, messages), tokenize=False)
    return tokenizer(text, add_special_tokens=False).input_ids


def load_tokenizer(model_dir: str):
    """The tokenizer of a model folder, right-padded, with a pad token (eos when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer
