"""Any OpenAI-compatible /v1/chat/completions server: OpenAI, Gemini's compatible endpoint, `vllm serve`,
llama.cpp's server.

One request per unit, `concurrency` in flight at a time; each call has a timeout and is retried with
exponential backoff and jitter on 429, 5xx, timeouts, dropped connections and malformed JSON. The API key
is read from the environment variable that `api_key_env` names and goes nowhere but the request header.
A raw completion prompt (a few-shot template) is sent as one user message; with `system_role` false (a served
model whose chat template has none, e.g. Gemma-2 behind `vllm serve`), a system message is folded into the
first user message. A model the server does not have (HTTP 404) stops the stage with one line naming it.
"""
import json
import os
import random
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed

from ..core.errors import StageFailure
from ..data.conversation import fold_system

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class APIError(StageFailure):
    pass


class OpenAIBackend:
    def __init__(self, base_url: str, model: str, *, api_key_env: str | None, concurrency: int, timeout_s: float,
                 max_attempts: int, system_role: bool, backoff_s: float = 1.0, max_backoff_s: float = 30.0):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.concurrency, self.timeout_s = model, concurrency, timeout_s
        self.max_attempts, self.backoff_s, self.max_backoff_s = max_attempts, backoff_s, max_backoff_s
        self.system_role = system_role
        key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not key:
            raise APIError(f"environment variable {api_key_env} (named by the api_key_env param) is not set")
        self._headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        self.identity = {"backend": "openai", "base_url": base_url.rstrip("/"), "model": model}
        self.retries = 0

    def plan(self, requests) -> list[list[int]]:
        return [[i] for i in range(len(requests))]

    def _body(self, request, seed: int) -> dict:
        messages = ([{"role": "user", "content": request.prefix + request.prompt}] if request.raw
                    else list(request.prompt) if self.system_role else fold_system(list(request.prompt)))
        s = request.sampling
        return {"model": self.model, "messages": messages, "max_tokens": s.max_new_tokens,
                "temperature": s.temperature, "top_p": s.top_p, "seed": seed}

    def _post(self, body: dict) -> tuple[str, int]:
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=self._headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            payload = json.loads(resp.read().decode("utf-8"))
        text = payload["choices"][0]["message"]["content"]
        if not isinstance(text, str):
            raise ValueError("choices[0].message.content is not a string")
        return text, int((payload.get("usage") or {}).get("completion_tokens") or 0)

    def run(self, requests, seed: int) -> tuple[list[str], int]:
        body = self._body(requests[0], seed)
        for attempt in range(1, self.max_attempts + 1):
            retry_after = None
            try:
                text, tokens = self._post(body)
                return [text], tokens
            except urllib.error.HTTPError as e:
                if e.code not in RETRYABLE_STATUS:
                    detail = " ".join(e.read(300).decode("utf-8", "replace").split())
                    if e.code == 404:
                        raise APIError(f"{self.url}: the server has no model {self.model!r} (HTTP 404; retired or "
                                       f"misspelt? name one it serves in the params' openai.model): {detail}") from None
                    raise APIError(f"{self.url}: HTTP {e.code} (not retried): {detail}") from None
                reason, retry_after = f"HTTP {e.code}", e.headers.get("Retry-After")
            except (TimeoutError, socket.timeout):
                reason = f"timed out after {self.timeout_s} s"
            except (urllib.error.URLError, ConnectionError) as e:
                reason = f"connection failed ({getattr(e, 'reason', e)})"
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError, ValueError) as e:
                reason = f"malformed response ({type(e).__name__}: {e})"
            if attempt == self.max_attempts:
                raise APIError(f"{self.url}: gave up after {attempt} attempts; last error: {reason}")
            self.retries += 1
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            if retry_after and retry_after.replace(".", "", 1).isdigit():
                delay = max(delay, min(float(retry_after), self.max_backoff_s))
            time.sleep(delay)

    def run_many(self, jobs):
        """Yield (job index, result) as calls finish, `concurrency` at a time."""
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        futures = {pool.submit(self.run, requests, seed): j for j, (requests, seed) in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
