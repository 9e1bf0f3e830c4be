"""Secrets: read from environment variables only, and kept out of every line that is logged, stored or raised.

`from_env(name)` is how code reads a secret (an API key); the value is remembered, and `redact` replaces it, and
anything shaped like a bearer token or a provider's key, with `[redacted]`. It is applied once per way out: the log
formatter (console and stage.log, so the MLflow stage.log artifact too), the one-line error of `clean_errors`
(core/cli.py), and the text a server returns (generation/openai_backend.py), before it reaches outputs or caches.
"""
import logging
import os
import re

REDACTED = "[redacted]"
# Well-known variables that hold secrets, redacted whenever they are set, also if no code of ours read them.
KNOWN = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD")
# Shapes of secrets no variable named: "Bearer <token>" (an echoed Authorization header), OpenAI-style sk-…,
# Hugging Face hf_…, Google AIza… keys.
TOKEN_SHAPES = re.compile(r"(?i:bearer)\s+[\w.~+/=-]{8,}|\bsk-[\w-]{16,}|\bhf_[A-Za-z0-9]{20,}|\bAIza[\w-]{30,}")
MIN_LENGTH = 8  # a shorter value (a test's "x") is too likely to occur in plain text to be replaced everywhere

_read: set[str] = set()


def from_env(name: str) -> str | None:
    """The secret in environment variable `name` (None when unset or empty), from now on redacted everywhere."""
    value = os.environ.get(name) or None
    if value:
        _read.add(value)
    return value


def _values() -> list[str]:
    known = {os.environ.get(name) for name in KNOWN}
    return sorted((v for v in _read | known if v and len(v) >= MIN_LENGTH), key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every secret read through `from_env`, every set variable of KNOWN and every token-shaped
    string replaced by [redacted]."""
    for value in _values():
        text = text.replace(value, REDACTED)
    return TOKEN_SHAPES.sub(REDACTED, text)


class RedactingFormatter(logging.Formatter):
    """The log line format of every handler (console and stage.log), with secrets redacted from the whole line,
    a traceback included."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
