import json

import pytest

from music_rm.generation.cache import GenerationCache
from music_rm.generation.generator import Generator
from music_rm.generation.request import Request
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
