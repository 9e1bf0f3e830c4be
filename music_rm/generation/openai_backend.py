"""Any OpenAI-compatible /v1/chat/completions server: OpenAI, Gemini's compatible endpoint, `vllm serve`,
llama.cpp's server.

One request per unit, `concurrency` in flight at a time on each endpoint. The request path, one function per step:
`run_many` (the workers, and stopping them) → `run` (one request's attempts, with exponential backoff and jitter
on 429, 5xx, timeouts, dropped connections, cut-off and malformed replies) → `_attempt` (one attempt: the error
an attempt ends in, classified) → `post` (one HTTP POST within its deadline) → `parse_reply`.

`base_url` is one endpoint or a list of them (one `vllm serve` per node, docs/cluster.md). `Endpoints` hands each
request the endpoint in rotation with the fewest requests on it; the request makes its attempts there. An endpoint
whose last max_attempts attempts failed in a row (refused, timed out, 5xx, ...: any failure worth retrying), or
that a request gave up on, is taken out of rotation with one log line naming it, while another is left; the
requests on it start again on another at their next attempt. When a request gives up on the last endpoint, the
stage stops with one line naming each endpoint and why it went (one endpoint: `<url>: gave up after N attempts;
last error: ...`).

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
import logging
import random
import re
import socket
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed, wait

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

log = logging.getLogger(__name__)


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


def base_urls(base_url: str | list[str]) -> list[str]:
    """The endpoints `openai.base_url` names, without a trailing /."""
    return [url.rstrip("/") for url in ([base_url] if isinstance(base_url, str) else base_url)]


def base_url_identity(base_url: str | list[str]) -> str | list[str]:
    """What stands for the endpoints in cache keys and provenance: the one URL (as before lists were allowed), or
    the URLs sorted (which endpoint answers a request, or the order they are listed in, changes nothing)."""
    urls = base_urls(base_url)
    return urls[0] if len(urls) == 1 else sorted(urls)


class Endpoint:
    def __init__(self, base_url: str):
        self.base_url, self.url = base_url, base_url + "/chat/completions"
        self.in_flight = 0  # requests holding a place on it
        self.failures = 0  # attempts failed in a row, of any request
        self.out: str | None = None  # why it was taken out of rotation


class Endpoints:
    """The endpoints of a backend, each with `concurrency` places for requests: `place` gives a request one on
    the endpoint in rotation with the fewest requests (ties taken in turn), waiting while all are taken. While
    another is left, an endpoint whose last `max_attempts` attempts failed (a dead node: every request on it
    failing at once) is taken out of rotation; so is one a request gives up on."""

    def __init__(self, base_url: str | list[str], concurrency: int, max_attempts: int):
        self.all = [Endpoint(url) for url in base_urls(base_url)]
        self.concurrency, self.max_attempts = concurrency, max_attempts
        self._changed = threading.Condition()
        self._turn = 0

    @contextlib.contextmanager
    def place(self, stop: StopSignal):
        """A place on an endpoint in rotation for the block; APIError when none is left, Stopped when `stop` is."""
        with self._changed:
            while True:
                if stop.is_set():
                    raise Stopped
                live = [e for e in self.all if e.out is None]
                if not live:
                    raise APIError(self._all_out())
                free = [e for e in live if e.in_flight < self.concurrency]
                if free:
                    break
                self._changed.wait()
            self._turn += 1
            endpoint = min(free, key=lambda e: (e.in_flight, (self.all.index(e) - self._turn) % len(self.all)))
            endpoint.in_flight += 1
        try:
            yield endpoint
        finally:
            with self._changed:
                endpoint.in_flight -= 1
                self._changed.notify_all()

    def attempted(self, endpoint: Endpoint, reason: str | None) -> None:
        """An attempt on `endpoint` succeeded (`reason` None) or failed for `reason`."""
        with self._changed:
            endpoint.failures = 0 if reason is None else endpoint.failures + 1
            if endpoint.failures < self.max_attempts or not any(e.out is None for e in self.all if e is not endpoint):
                return
            self.take_out(endpoint, f"its last {endpoint.failures} attempts failed; last error: {reason}")

    def take_out(self, endpoint: Endpoint, why: str) -> None:
        """`endpoint` out of rotation (once, and said in one log line while others are left)."""
        with self._changed:  # a reentrant lock: `attempted` holds it already
            if endpoint.out is not None:
                return
            endpoint.out = why
            live = [e.base_url for e in self.all if e.out is None]
            self._changed.notify_all()
        if live:
            log.warning("%s taken out of rotation (%s); its requests go to the %d other endpoint(s) left: %s",
                        endpoint.base_url, why, len(live), ", ".join(live))

    def wake(self) -> None:
        """Every request waiting for a place looks again (at the stop signal, once it is set)."""
        with self._changed:
            self._changed.notify_all()

    def _all_out(self) -> str:
        if len(self.all) == 1:
            return f"{self.all[0].url}: {self.all[0].out}"
        return (f"all {len(self.all)} endpoints of openai.base_url are out of rotation: "
                + "; ".join(f"{e.base_url}: {e.out}" for e in self.all))


class OpenAIBackend:
    def __init__(self, base_url: str | list[str], model: str, *, api_key_env: str | None, concurrency: int,
                 timeout_s: float, max_attempts: int, system_role: bool, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0, server=None):
        self.endpoints = Endpoints(base_url, concurrency, max_attempts)
        self.model, self.concurrency, self.timeout_s = model, concurrency, timeout_s
        self.max_attempts, self.backoff_s, self.max_backoff_s = max_attempts, backoff_s, max_backoff_s
        self.system_role = system_role
        key = from_env(api_key_env) if api_key_env else None
        if api_key_env and not key:
            raise APIError(f"environment variable {api_key_env} (named by the api_key_env param) is not set")
        self._headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        self.identity = {"backend": "openai", "base_url": base_url_identity(base_url), "model": model}
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

    def _attempt(self, url: str, body: bytes, stop: StopSignal) -> tuple[Completions | None, str, str | None]:
        """One attempt at `url`: (the unit's completions, "", None), or (None, why it failed, the Retry-After it
        was given) for a failure worth retrying. A failure that is not raises APIError; a stop raises Stopped."""
        deadline = Deadline(self.timeout_s)
        try:
            with stop.watching(deadline), deadline:
                text, cut, served, tokens = parse_reply(post(url, body, self._headers, deadline))
            return Completions([redact(text)], tokens, [cut], served), "", None
        except urllib.error.HTTPError as e:
            if e.code in RETRYABLE_STATUS:
                return None, f"HTTP {e.code}", e.headers.get("Retry-After")
            detail = " ".join(e.read(4 * ERROR_BODY_CHARS).decode("utf-8", "replace").split())[:ERROR_BODY_CHARS]
            if e.code == 404:
                raise APIError(f"{url}: the server has no model {self.model!r} (HTTP 404; retired or "
                               f"misspelt? name one it serves in the params' openai.model): {detail}") from None
            if e.code == 400 and CONTEXT_EXCEEDED.search(detail):
                return Completions([None], 0), "", None  # too long for the served context: counted by the Generator
            raise APIError(f"{url}: HTTP {e.code} (not retried): {detail}") from None
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
        """One request's completion, after up to max_attempts attempts on an endpoint; when none succeeds, that
        endpoint is taken out of rotation and the request starts again on another. APIError when no endpoint is
        left, Stopped as soon as `stop` is set."""
        body, stop = self._body(requests[0], seed), stop or StopSignal()
        first = True
        while True:
            with self.endpoints.place(stop) as endpoint:
                for attempt in range(1, self.max_attempts + 1):
                    if endpoint.out is not None:
                        break  # taken out by another request meanwhile
                    if not first:
                        self.retries += 1
                    first = False
                    result, reason, retry_after = self._attempt(endpoint.url, body, stop)
                    self.endpoints.attempted(endpoint, None if result is not None else reason)
                    if result is not None:
                        return result
                    if attempt == self.max_attempts:
                        self.endpoints.take_out(endpoint, f"gave up after {attempt} attempts; last error: {reason}")
                    elif stop.wait(self._backoff(attempt, retry_after)):
                        raise Stopped

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        """Seconds before the next attempt: exponential with jitter, at least a Retry-After the server gave."""
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        if retry_after and retry_after.replace(".", "", 1).isdigit():
            delay = max(delay, min(float(retry_after), self.max_backoff_s))
        return delay

    def run_many(self, jobs):
        """Yield (job index, Completions) as calls finish, `concurrency` at a time on each endpoint. When a call
        fails for good, or the consumer stops (an error of its own, an interrupt), every worker stops: queued calls
        are dropped, backoffs and calls in flight end at once, and the workers are gone when the error propagates."""
        stop = StopSignal()

        def halt():
            stop.set()
            self.endpoints.wake()  # the requests waiting for a place see it

        def run_or_stop(requests, seed):
            try:
                return self.run(requests, seed, stop)
            except BaseException:
                halt()  # at once, so that this worker's next job does not start before the consumer sees it
                raise

        pool = ThreadPoolExecutor(max_workers=self.concurrency * len(self.endpoints.all))
        futures = {pool.submit(run_or_stop, requests, seed): j for j, (requests, seed) in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Stopped:  # stopped by another worker's failure, which can finish after this one: raise that
                    wait(futures)
                    raise next((e for f in futures if not f.cancelled() and (e := f.exception())
                                and not isinstance(e, Stopped)),
                               Stopped()) from None
                yield futures[future], result
        finally:
            halt()
            pool.shutdown(wait=True, cancel_futures=True)
