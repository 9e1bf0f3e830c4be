"""Any OpenAI-compatible /v1/chat/completions server: OpenAI, Gemini's compatible endpoint, `vllm serve`,
llama.cpp's server.

One request per unit, `concurrency` in flight at a time. The request path, one function per step:
`run_many` (the workers, and stopping them) → `run` (one request's attempts, with exponential backoff and jitter
on 429, 5xx, timeouts, dropped connections, cut-off and malformed replies) → `_attempt` (one attempt: the error
an attempt ends in, classified) → `post` (one HTTP POST within its deadline) → `parse_reply`.

`timeout_s` is a deadline on the whole call: connecting, waiting for the first byte and reading the body
together (a `Deadline` shuts the socket down when it passes, whatever the call waits on then). When a request
fails for good, or the stage is interrupted, `run_many` stops every worker: no new attempt starts, the calls in
flight are cut off at once, and the stage ends with the one error.

The API key is read from the environment variable that `api_key_env` names (core/secrets.py, which then
redacts it from every log line and error) and goes nowhere but the request header; the text a server sends back
is redacted too before it reaches outputs and the cache. A raw completion prompt (a few-shot template) is sent
as one user message; with `system_role` false (a served model whose chat template has none, e.g. Gemma-2 behind
`vllm serve`), a system message is folded into the first user message. A model the server does not have (HTTP
404) stops the stage with one line naming it. A prompt over the served model's context (HTTP 400 saying so) is
answered None, which the Generator counts as `prompt_too_long` as it does a prompt it measured itself; any other
400 stops the stage. Each reply's `finish_reason` ("length": cut at max_tokens) and the model id the server
reports go back with its text (generator.Completions).
"""
import contextlib
import http.client
import json
import random
import re
import socket
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed

from ..core.errors import StageFailure
from ..core.secrets import from_env, redact
from ..data.conversation import fold_system
from .generator import Completions

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# How servers word an HTTP 400 for a prompt over the context. vLLM 0.32: "This model's maximum context length is
# N tokens. However, you requested M tokens ..."; OpenAI: code "context_length_exceeded"; Gemini: "The input token
# count (N) exceeds the maximum number of tokens allowed (M)".
CONTEXT_EXCEEDED = re.compile(r"maximum context length|context_length_exceeded|maximum model length|"
                              r"exceeds the maximum number of tokens", re.IGNORECASE)
ERROR_BODY_CHARS = 300  # of a non-retried error's body, quoted in its one line


class APIError(StageFailure):
    pass


class Stopped(Exception):
    """A worker's request given up because the stage stops (another request failed for good, or an interrupt)."""


class StopSignal:
    """Set once by `run_many` when it stops: every attempt under way is cut off, and none starts after."""

    def __init__(self):
        self._event, self._lock, self._deadlines = threading.Event(), threading.Lock(), set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep `seconds`, or less when set; whether it is set."""
        return self._event.wait(seconds)

    def set(self) -> None:
        with self._lock:
            self._event.set()
            for deadline in self._deadlines:
                deadline.expire()

    @contextlib.contextmanager
    def watching(self, deadline: "Deadline"):
        """`deadline` expires at once if this is set while the block runs; Stopped if it is set already."""
        with self._lock:
            if self._event.is_set():
                raise Stopped
            self._deadlines.add(deadline)
        try:
            yield
        finally:
            with self._lock:
                self._deadlines.discard(deadline)


class Deadline:
    """`timeout_s` from entering, or at `expire()`, the sockets it watches are shut down: a connection waiting on
    anything (the first byte, the rest of a body sent one byte at a time) ends at once. Connecting is bounded by
    the socket's own timeout, which is `timeout_s` as well."""

    def __init__(self, timeout_s: float):
        self.timeout_s, self.expired = timeout_s, False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout_s, self.expire)
        self._timer.daemon = True

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


class _Watched:
    """An http.client connection whose socket, once connected, its Deadline watches."""

    def __init__(self, *args, deadline: Deadline, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def connect(self):
        super().connect()
        self.deadline.watch(self.sock)


class _HTTP(_Watched, http.client.HTTPConnection):
    pass


class _HTTPS(_Watched, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req):
        return self.do_open(_HTTP, req, deadline=self.deadline)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline):
        super().__init__()
        self.deadline = deadline

    def https_open(self, req):
        return self.do_open(_HTTPS, req, context=self._context, deadline=self.deadline)


def post(url: str, body: bytes, headers: dict, deadline: Deadline) -> bytes:
    """The whole body of the reply to one POST (urllib, so proxies from the environment apply), or TimeoutError
    once `deadline` has passed, whatever the call was waiting on. Raises urllib's HTTPError for an error status."""
    opener = urllib.request.build_opener(_HTTPHandler(deadline), _HTTPSHandler(deadline))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with opener.open(request, timeout=deadline.timeout_s) as response:
            payload = response.read()
    except urllib.error.HTTPError:
        raise
    except (OSError, http.client.HTTPException):
        if deadline.expired:
            raise TimeoutError from None
        raise
    if deadline.expired:  # the socket was shut under a reply without a length: what came is cut short
        raise TimeoutError
    return payload


def parse_reply(payload: bytes) -> tuple[str, bool, str | None, int]:
    """(the completion's text, whether it was cut at max_tokens, the model id the server reports, its tokens)."""
    reply = json.loads(payload.decode("utf-8"))
    choice = reply["choices"][0]
    text = choice["message"]["content"]
    if not isinstance(text, str):
        raise ValueError("choices[0].message.content is not a string")
    model = reply.get("model")
    return (text, choice.get("finish_reason") == "length", model if isinstance(model, str) else None,
            int((reply.get("usage") or {}).get("completion_tokens") or 0))


class OpenAIBackend:
    def __init__(self, base_url: str, model: str, *, api_key_env: str | None, concurrency: int, timeout_s: float,
                 max_attempts: int, system_role: bool, backoff_s: float = 1.0, max_backoff_s: float = 30.0,
                 server=None):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.concurrency, self.timeout_s = model, concurrency, timeout_s
        self.max_attempts, self.backoff_s, self.max_backoff_s = max_attempts, backoff_s, max_backoff_s
        self.system_role = system_role
        key = from_env(api_key_env) if api_key_env else None
        if api_key_env and not key:
            raise APIError(f"environment variable {api_key_env} (named by the api_key_env param) is not set")
        self._headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        self.identity = {"backend": "openai", "base_url": base_url.rstrip("/"), "model": model}
        self.retries = 0
        self.server = server  # a VLLMServer this backend's stage started: stopped by close()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def plan(self, requests) -> list[list[int]]:
        return [[i] for i in range(len(requests))]

    def _body(self, request, seed: int) -> bytes:
        messages = ([{"role": "user", "content": request.prefix + request.prompt}] if request.raw
                    else list(request.prompt) if self.system_role else fold_system(list(request.prompt)))
        s = request.sampling
        return json.dumps({"model": self.model, "messages": messages, "max_tokens": s.max_new_tokens,
                           "temperature": s.temperature, "top_p": s.top_p, "seed": seed}).encode()

    def _attempt(self, body: bytes, stop: StopSignal) -> tuple[Completions | None, str, str | None]:
        """One attempt: (the unit's completions, "", None), or (None, why it failed, the Retry-After it was
        given) for a failure worth retrying. A failure that is not raises APIError; a stop raises Stopped."""
        deadline = Deadline(self.timeout_s)
        try:
            with stop.watching(deadline), deadline:
                text, cut, served, tokens = parse_reply(post(self.url, body, self._headers, deadline))
            return Completions([redact(text)], tokens, [cut], served), "", None
        except urllib.error.HTTPError as e:
            if e.code in RETRYABLE_STATUS:
                return None, f"HTTP {e.code}", e.headers.get("Retry-After")
            detail = " ".join(e.read(4 * ERROR_BODY_CHARS).decode("utf-8", "replace").split())[:ERROR_BODY_CHARS]
            if e.code == 404:
                raise APIError(f"{self.url}: the server has no model {self.model!r} (HTTP 404; retired or "
                               f"misspelt? name one it serves in the params' openai.model): {detail}") from None
            if e.code == 400 and CONTEXT_EXCEEDED.search(detail):
                return Completions([None], 0), "", None  # too long for the served context: counted by the Generator
            raise APIError(f"{self.url}: HTTP {e.code} (not retried): {detail}") from None
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as e:
            if stop.is_set():
                raise Stopped from None
            if isinstance(e, TimeoutError):
                return None, f"no whole reply within timeout_s = {self.timeout_s} s", None
            if isinstance(e, http.client.IncompleteRead):
                return None, f"reply cut off after {len(e.partial)} bytes", None
            return None, f"connection failed ({getattr(e, 'reason', None) or type(e).__name__})", None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError, ValueError) as e:
            return None, f"malformed response ({type(e).__name__}: {e})", None

    def run(self, requests, seed: int, stop: StopSignal | None = None) -> Completions:
        """One request's completion, after up to max_attempts attempts; APIError when none succeeds, Stopped as
        soon as `stop` is set."""
        body, stop = self._body(requests[0], seed), stop or StopSignal()
        for attempt in range(1, self.max_attempts + 1):
            result, reason, retry_after = self._attempt(body, stop)
            if result is not None:
                return result
            if attempt == self.max_attempts:
                raise APIError(f"{self.url}: gave up after {attempt} attempts; last error: {reason}")
            self.retries += 1
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            if retry_after and retry_after.replace(".", "", 1).isdigit():
                delay = max(delay, min(float(retry_after), self.max_backoff_s))
            if stop.wait(delay):
                raise Stopped

    def run_many(self, jobs):
        """Yield (job index, Completions) as calls finish, `concurrency` at a time. When a call fails for good, or
        the consumer stops (an error of its own, an interrupt), every worker stops: queued calls are dropped,
        backoffs and calls in flight end at once, and the workers are gone when the error propagates."""
        stop = StopSignal()

        def run_or_stop(requests, seed):
            try:
                return self.run(requests, seed, stop)
            except BaseException:
                stop.set()  # at once, so that this worker's next job does not start before the consumer sees it
                raise

        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        futures = {pool.submit(run_or_stop, requests, seed): j for j, (requests, seed) in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
