"""A trained reward model served by vLLM's pooling runner, for RL loops (PPO, GRPO) that ask for rewards over HTTP.

`serve_command` is the command line that serves a reward-model folder with vLLM's OpenAI-compatible server so
that it answers what `music-rm score` answers, at the same dtype:
- `--runner pooling` with the activation off (`--pooler-config '{"use_activation": false}'`): for a one-label
  classifier vLLM returns the sigmoid of the score by default; off, POST /pooling answers the raw reward;
- the folder's own chat template, wrapped to fold a leading system message into the first user message when
  the template has no system role (data/chat_template.py), so a conversation is tokenized as training and
  scoring tokenize it; vLLM adds no special tokens beyond the template's for a chat request, nor a generation
  prompt, as `token_ids` does.

`RewardClient` posts conversations to such a server, one request each, `concurrency` at a time.
"""
import hashlib
import json
import shlex
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..core.errors import StageFailure
from ..core.io import write_text
from ..core.paths import cache_root
from ..data.chat_template import accepts_system_role, load_tokenizer
from .model import check_reward_model

RAW_REWARD = json.dumps({"use_activation": False})
# Jinja twin of data/conversation.py fold_system, put before a template that has no system role.
FOLD_SYSTEM = ("{%- if messages and messages[0]['role'] == 'system' -%}"
               "{%- set messages = [{'role': 'user', 'content': messages[0]['content'] + '\\n\\n' + "
               "messages[1]['content']}] + messages[2:] -%}{%- endif -%}")


def serving_template(model_dir: str) -> Path | None:
    """The chat template file the server must use: None when the folder's own takes a system message as it is,
    else the folder's own with a leading system message folded into the first user message, written to
    `.cache/chat-templates/<sha256>.jinja`."""
    tokenizer = load_tokenizer(model_dir)
    if accepts_system_role(tokenizer):
        return None
    template = FOLD_SYSTEM + tokenizer.chat_template
    path = cache_root() / "chat-templates" / f"{hashlib.sha256(template.encode()).hexdigest()}.jinja"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, template)
    return path


def scoring_dtype() -> str:
    """The dtype `music-rm score` loads a reward model in here: bf16 on GPUs, fp32 on the CPU."""
    import torch

    return "bfloat16" if torch.cuda.is_available() else "float32"


def serve_command(model_dir: str, python: str, host: str, port: int, dtype: str,
                  vllm_args: tuple[str, ...] = ()) -> list[str]:
    """The command that serves the reward model in `model_dir` with the vLLM installed for `python`; the model's
    name on the server is `model_dir` as given. `vllm_args` go last (e.g. --data-parallel-size 8)."""
    check_reward_model(model_dir)
    template = serving_template(model_dir)
    return [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir, "--runner", "pooling",
            "--convert", "classify", "--pooler-config", RAW_REWARD, "--dtype", dtype, "--host", host,
            "--port", str(port), *(["--chat-template", str(template)] if template else []), *vllm_args]


def printable(command: list[str]) -> str:
    """The command as one shell line."""
    return shlex.join(command)


class RewardClient:
    """Rewards of conversations from a server started by `serve_command`: POST /pooling with the messages,
    `concurrency` requests in flight (default 8), each given up after `timeout_s` seconds (default 60)."""

    def __init__(self, base_url: str, model: str, concurrency: int = 8, timeout_s: float = 60.0):
        self.url = base_url.rstrip("/") + "/pooling"
        self.model, self.concurrency, self.timeout_s = model, concurrency, timeout_s

    def reward(self, messages: list[dict]) -> float:
        body = json.dumps({"model": self.model, "messages": messages}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = " ".join(e.read(300).decode("utf-8", "replace").split())
            raise StageFailure(f"{self.url}: HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            raise StageFailure(f"{self.url}: {getattr(e, 'reason', e)}") from None
        return float(payload["data"][0]["data"][0])

    def score(self, conversations: list[list[dict]]) -> list[float]:
        """One reward per conversation, in input order."""
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self.reward, conversations))
