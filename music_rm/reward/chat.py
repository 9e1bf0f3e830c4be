"""Conversations as token ids, through the model's chat template (a system message folded in where the
template has no system role: data/chat_template.py)."""
from ..data.chat_template import for_template


def token_ids(tokenizer, messages: list[dict]) -> list[int]:
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
