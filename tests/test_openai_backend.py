import json
import re
import threading
import time

import pytest

from music_rm.generation.cache import GenerationCache
from music_rm.generation.generator import CUT, TOO_LONG, Generator
from music_rm.generation.request import Request, derive_seed
from music_rm.generation.openai_backend import APIError, OpenAIBackend
from music_rm.core.params import Sampling
from tests.openai_fixture import FixtureServer

SAMPLING = Sampling(max_new_tokens=16, temperature=0.7, top_p=0.9)
KEY = "sk-test-sentinel-0123456789"


def requests(n):
    return [Request(({"role": "user", "content": f"question number {i}"},), SAMPLING) for i in range(n)]


def backend(server, **kwargs):
    options = dict(api_key_env="MUSIC_TEST_KEY", concurrency=4, timeout_s=0.5, max_attempts=6, system_role=True,
                   backoff_s=0.01, max_backoff_s=0.05)
    return OpenAIBackend(server.url, "served-model", **{**options, **kwargs})


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("MUSIC_TEST_KEY", KEY)


def test_requests_carry_model_sampling_seed_and_key():
    with FixtureServer() as server:
        outputs = Generator(backend(server)).generate(requests(10), seed=7)
    assert [o.split(" #")[0] for o in outputs] == [f"re: question number {i}" for i in range(10)]
    assert len(server.requests) == 10
    body = server.requests[0]
    assert (body["model"], body["max_tokens"], body["temperature"], body["top_p"]) == ("served-model", 16, 0.7, 0.9)
    assert len({b["seed"] for b in server.requests}) == 10
    assert all(h["Authorization"] == f"Bearer {KEY}" for h in server.headers)


def test_raw_prompts_are_sent_as_one_user_message():
    with FixtureServer() as server:
        Generator(backend(server)).generate([Request(" and the rest", SAMPLING, prefix="Few-shot text")], seed=0)
    assert server.requests[0]["messages"] == [{"role": "user", "content": "Few-shot text and the rest"}]


def test_transient_faults_are_retried_until_success():
    faults = ["429", "500", "malformed", "timeout", "drop"]
    with FixtureServer(faults, timeout_sleep_s=1.0) as server:
        api = backend(server, concurrency=1)
        outputs = Generator(api).generate(requests(2), seed=1)
    assert all(o.startswith("re: question number") for o in outputs)
    assert api.retries == len(faults)


def test_a_client_error_is_not_retried_and_says_why():
    with FixtureServer(["400"]) as server, pytest.raises(APIError, match=r"HTTP 400 \(not retried\)"):
        Generator(backend(server, concurrency=1)).generate(requests(1), seed=1)


def test_a_prompt_over_the_served_context_is_counted_not_retried_not_cached_and_the_rest_go_on(tmp_path):
    cache = GenerationCache(tmp_path / "cache.sqlite")
    with FixtureServer(["context"]) as server:
        generator = Generator(backend(server, concurrency=1), cache)
        outputs, reasons, retried, _ = generator.generate_checked(requests(3), lambda i, t: (t, None), ("s",), retries=2)
        assert outputs[0] is None and all(outputs[1:]) and reasons == [TOO_LONG, None, None] and not retried
        assert generator.too_long == 1 and len(server.requests) == 3  # one call for it, no retry
        again = Generator(backend(server), cache)  # e.g. the server restarted with a longer context
        texts = again.generate(requests(3), seed=derive_seed("s", 0))
    assert (again.model_calls, again.cache_hits) == (1, 2) and texts[0] and texts[1:] == outputs[1:]


def test_permanent_failure_stops_and_keeps_what_was_generated(tmp_path):
    cache = GenerationCache(tmp_path / "cache.sqlite")
    with FixtureServer([*["ok"] * 3, *["500"] * 50]) as server:
        with pytest.raises(APIError, match="gave up after 3 attempts; last error: HTTP 500"):
            Generator(backend(server, concurrency=1, max_attempts=3), cache).generate(requests(6), seed=1)
        server.faults.clear()  # the server recovers
        resumed = Generator(backend(server), cache)
        resumed.generate(requests(6), seed=1)
    assert (resumed.cache_hits, resumed.model_calls) == (3, 3)


def test_a_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("MUSIC_TEST_KEY")
    with FixtureServer() as server, pytest.raises(APIError, match="MUSIC_TEST_KEY"):
        backend(server)


def test_the_key_stays_out_of_cache_keys_and_errors(tmp_path):
    cache_path = tmp_path / "cache.sqlite"
    with FixtureServer(["400"]) as server:
        api = backend(server, concurrency=1)
        with pytest.raises(APIError) as e:
            Generator(api, GenerationCache(cache_path)).generate(requests(1), seed=1)
    assert KEY not in str(e.value) and KEY not in repr(api.identity)
    assert KEY.encode() not in cache_path.read_bytes()


def test_simulate_through_an_api_that_fails_now_and_then(tmp_path):
    from music_rm.method.simulate import TreeBuilder
    from music_rm.data.sources import fetch
    from tests.test_simulate import sim_params
    from tests.test_sources import params as fetch_params

    train, _, _ = fetch(fetch_params())
    seeds = [(row, "train") for row in train[:3]]
    faults = ["429", "ok", "500", "malformed", "ok", "timeout", "drop", "ok", "429"]
    with FixtureServer(faults, timeout_sleep_s=1.0) as server:
        api = backend(server, concurrency=3, max_attempts=len(faults) + 1)
        builder = TreeBuilder(Generator(api), sim_params(turns=2))
        trees = builder.build(seeds)
    assert len(trees) == 3 and not builder.dropped
    assert api.retries == 6
    for t in trees:
        n = len(t["context"])
        assert [m["role"] for m in t["rejected"][n:]] == ["user", "assistant"] * 2
        assert all(h["rewritten"].startswith("re: ") for h in t["hidden"])


def test_a_retired_model_stops_with_one_line_that_says_so():
    with FixtureServer(["404"]) as server:
        with pytest.raises(APIError) as e:
            Generator(backend(server, concurrency=1)).generate(requests(1), seed=1)
    assert "has no model 'served-model' (HTTP 404" in str(e.value) and "\n" not in str(e.value)
    assert len(server.requests) == 1  # not retried


def test_a_served_model_without_a_system_role_gets_it_folded():
    messages = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi."})
    with FixtureServer() as server:
        Generator(backend(server, system_role=False)).generate([Request(messages, SAMPLING)], seed=1)
        Generator(backend(server)).generate([Request(messages, SAMPLING)], seed=1)
    assert server.requests[0]["messages"] == [{"role": "user", "content": "Be brief.\n\nHi."}]
    assert server.requests[1]["messages"] == list(messages)


def test_requests_spread_over_workers_give_the_trees_of_one_worker():
    """The sharding path of a data-parallel server: whichever replica answers, each request carries its own
    seed, so many requests in flight give byte-identical trees to one at a time."""
    from music_rm.data.sources import fetch
    from music_rm.method.simulate import TreeBuilder
    from tests.test_simulate import sim_params
    from tests.test_sources import params as fetch_params

    train, _, _ = fetch(fetch_params())
    seeds = [(row, "train") for row in train[:4]]
    with FixtureServer() as server:
        one = TreeBuilder(Generator(backend(server, concurrency=1)), sim_params(turns=2)).build(seeds)
        many = TreeBuilder(Generator(backend(server, concurrency=8)), sim_params(turns=2)).build(seeds)
    assert len(one) == 4 and json.dumps(one, sort_keys=True) == json.dumps(many, sort_keys=True)


def test_timeout_s_is_a_deadline_on_the_whole_call():
    """A server that sends its reply one byte every 0.2 s (each byte well inside the timeout, the whole reply ~30 s)
    is given up after timeout_s per attempt, not after the whole body."""
    with FixtureServer(["trickle"] * 2, trickle_s=0.2) as server:
        start = time.monotonic()
        with pytest.raises(APIError) as e:
            Generator(backend(server, concurrency=1, max_attempts=2)).generate(requests(1), seed=1)
        elapsed = time.monotonic() - start
    assert "gave up after 2 attempts; last error: no whole reply within timeout_s = 0.5 s" in str(e.value)
    assert elapsed < 2 * 0.5 + 0.05 + 1.0  # two deadlines, the backoff (at most max_backoff_s), slack
    assert len(server.requests) == 2


def test_a_failure_stops_every_worker_at_once():
    """One request fails for good while three others are in flight on a trickling server: the error comes out at
    once and no worker is left running (none would retry later, none keeps the process alive)."""
    with FixtureServer(["400"] + ["trickle"] * 20, trickle_s=0.2) as server:
        api = backend(server, concurrency=4, timeout_s=30, max_attempts=5)
        start = time.monotonic()
        with pytest.raises(APIError, match=r"HTTP 400 \(not retried\)"):
            Generator(api).generate(requests(8), seed=1)
        elapsed = time.monotonic() - start
        workers = [t for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor")]
        time.sleep(1.0)  # time for any request sent late to arrive
    assert elapsed < 3 and workers == []
    assert len(server.requests) <= 4  # of the first four at most: no queued request started after it, none retried


def test_a_reply_cut_short_is_retried_and_then_one_error_line():
    with FixtureServer(["truncated"]) as server:
        api = backend(server, concurrency=1)
        [text] = Generator(api).generate(requests(1), seed=1)
    assert text.startswith("re: question number 0") and api.retries == 1
    with FixtureServer(["truncated"] * 2) as server, pytest.raises(APIError) as e:
        Generator(backend(server, concurrency=1, max_attempts=2)).generate(requests(1), seed=1)
    assert re.search(r"gave up after 2 attempts; last error: reply cut off after \d+ bytes$", str(e.value))


def test_cut_replies_and_the_served_model_come_back_and_are_cached(tmp_path):
    cache = GenerationCache(tmp_path / "cache.sqlite")
    with FixtureServer(["length"], served_model="served-model-2025-06-01") as server:
        first = Generator(backend(server, concurrency=1), cache)
        texts, cut = first.generate_with_cuts(requests(2), seed=3)
        again = Generator(backend(server), cache)
        assert again.generate_with_cuts(requests(2), seed=3) == (texts, cut) and again.model_calls == 0
    assert cut == [True, False]
    assert first.served_models == again.served_models == {"served-model-2025-06-01"}
    with FixtureServer(["length", "ok", "length"]) as server:  # not kept: retried with a new seed, then a failure
        outputs, reasons, retried, kept_cut = Generator(backend(server, concurrency=1)).generate_checked(
            requests(2), lambda i, t: (t, None), ("s",), retries=1, keep_cut=False)
    assert reasons == [CUT, None] and outputs[0] is None and outputs[1] and retried == {CUT: 1}
    assert kept_cut == [False, False] and len(server.requests) == 3


def test_a_key_the_server_echoes_stays_out_of_the_error_and_the_text():
    with FixtureServer(["echo"]) as server, pytest.raises(APIError) as e:
        Generator(backend(server, concurrency=1)).generate(requests(1), seed=1)
    assert "HTTP 400 (not retried)" in str(e.value) and "[redacted]" in str(e.value) and KEY not in str(e.value)
    with FixtureServer(reply=lambda body: f"your header was Bearer {KEY}") as server:
        [text] = Generator(backend(server)).generate(requests(1), seed=1)
    assert text == "your header was Bearer [redacted]"
