"""The openai backend over several endpoints (one `vllm serve` per node, docs/cluster.md): real HTTP on 127.0.0.1,
fixture servers that answer, refuse connections, time out, answer 5xx, or die part way through."""
import contextlib
import copy
import re
import socket
import threading
import time
from types import SimpleNamespace

import pytest
import yaml

from music_rm.core.errors import ParamsError
from music_rm.core.params import validate
from music_rm.generation.backends import make_backend
from music_rm.generation.generator import Generator
from music_rm.generation.openai_backend import APIError, OpenAIBackend
from music_rm.generation.vllm_server import server_command
from tests.conftest import REPO
from tests.openai_fixture import FixtureServer
from tests.test_api_faults import one_error_line, simulate, workdir  # noqa: F401 (a fixture)
from tests.test_openai_backend import api_key, requests  # noqa: F401 (a fixture)

ROTATION = "taken out of rotation"


class InFlight:
    """A fixture server's reply that takes `seconds` and counts the requests it answers at once."""

    def __init__(self, seconds=0.05):
        self.seconds, self.now, self.most, self.lock = seconds, 0, 0, threading.Lock()

    def __call__(self, body):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1
        return f"re: {body['messages'][-1]['content'][-30:]} #{body['seed']}"


@contextlib.contextmanager
def refusing():
    """The URL of a port bound on 127.0.0.1 that nothing listens on: every connection is refused (and the port
    stays ours, so no other server takes it meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


@contextlib.contextmanager
def dead(kind):
    if kind == "refused":
        with refusing() as url:
            yield SimpleNamespace(url=url, requests=[])
    else:  # every request answered 500, or its reply later than timeout_s
        with FixtureServer([kind] * 1000, timeout_sleep_s=1.0) as server:
            yield server


def backend(urls, **kwargs):
    options = dict(api_key_env="MUSIC_TEST_KEY", concurrency=2, timeout_s=0.5, max_attempts=3, system_role=True,
                   backoff_s=0.01, max_backoff_s=0.05)
    return OpenAIBackend(urls, "served-model", **{**options, **kwargs})


def rotation_lines(caplog):
    return [r.getMessage() for r in caplog.records if ROTATION in r.getMessage()]


@pytest.mark.parametrize("kind", ["refused", "500", "timeout"])
def test_requests_spread_over_the_live_endpoints_and_a_dead_one_is_named_once(kind, caplog):
    on_a, on_b = InFlight(), InFlight()
    with FixtureServer(reply=on_a) as a, FixtureServer(reply=on_b) as b, dead(kind) as gone:
        api = backend([a.url, gone.url, b.url], concurrency=4)
        outputs = Generator(api).generate(requests(24), seed=1)
    assert [o.split(" #")[0] for o in outputs] == [f"re: question number {i}" for i in range(24)]
    assert len(a.requests) + len(b.requests) == 24 and min(len(a.requests), len(b.requests)) >= 6
    assert on_a.most == on_b.most == 4  # concurrency is per endpoint
    # out of rotation at its 3rd failure in a row, whichever requests they were: those 3 and at most the 3 others
    # then in flight reached it (a request's own 3 attempts each, the rule alone, would be 4 × 3)
    assert len(gone.requests) <= 3 + 4 - 1
    [line] = rotation_lines(caplog)
    assert line.startswith(f"{gone.url} {ROTATION} (its last 3 attempts failed; last error: ")
    assert line.endswith(f"its requests go to the 2 other endpoint(s) left: {a.url}, {b.url}")


def test_an_endpoint_that_dies_part_way_is_left_and_its_requests_answered_elsewhere(caplog):
    def die_after_four(body):
        if len(b.requests) == 4:  # the 4th request is answered, the server is gone after it
            threading.Thread(target=lambda: (b.httpd.shutdown(), b.httpd.server_close())).start()
        return f"re: {body['messages'][-1]['content'][-30:]} #{body['seed']}"

    with FixtureServer(reply=InFlight()) as a, FixtureServer(reply=die_after_four) as b:
        outputs = Generator(backend([a.url, b.url])).generate(requests(20), seed=1)
    assert [o.split(" #")[0] for o in outputs] == [f"re: question number {i}" for i in range(20)]
    assert len(b.requests) >= 4 and len(a.requests) >= 20 - len(b.requests)
    [line] = rotation_lines(caplog)
    assert line.startswith(f"{b.url} {ROTATION} (its last 3 attempts failed; last error: connection failed")


def gone_for(message: str, one: str, two: str, attempts: int) -> None:
    """Why each of two endpoints went, from the one line that names them both: one went as the other was left, the
    other when a request gave up on it (which first, the threads decide)."""
    match = re.fullmatch(rf"all 2 endpoints of openai.base_url are out of rotation: {one}: (.+); {two}: (.+)", message)
    assert match, message
    refused = "connection failed ([Errno 111] Connection refused)"
    assert sorted(match.groups()) == [f"gave up after {attempts} attempts; last error: {refused}",
                                      f"its last {attempts} attempts failed; last error: {refused}"]


def test_when_every_endpoint_is_dead_one_line_names_each(caplog):
    with refusing() as one, refusing() as two, pytest.raises(APIError) as e:
        Generator(backend([one, two])).generate(requests(6), seed=1)
    gone_for(str(e.value), one, two, attempts=3)
    assert len(rotation_lines(caplog)) == 1  # the first to go, while the other was left


def test_one_endpoint_keys_the_cache_and_provenance_as_before_and_a_list_by_its_urls():
    single = backend("http://127.0.0.1:8000/v1/").identity
    assert single == backend(["http://127.0.0.1:8000/v1"]).identity == {
        "backend": "openai", "base_url": "http://127.0.0.1:8000/v1", "model": "served-model"}
    assert (backend(["http://b/v1", "http://a/v1/"]).identity["base_url"]
            == backend(["http://a/v1", "http://b/v1"]).identity["base_url"] == ["http://a/v1", "http://b/v1"])


def params_with(section, **openai):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw[section].update(backend="openai")
    raw[section]["openai"].update(**openai)
    return validate(copy.deepcopy(raw), "params.yaml")


def test_the_judge_section_spreads_over_its_endpoints_too():
    with FixtureServer() as a, FixtureServer() as b:
        judge = params_with("judge", base_url=[a.url, b.url], api_key_env=None, concurrency=1).judge
        Generator(make_backend(judge, "unused: served", trust_remote_code=False)).generate(requests(8), seed=1)
    assert len(a.requests) + len(b.requests) == 8 and min(len(a.requests), len(b.requests)) >= 2


def test_a_list_is_refused_where_the_stage_starts_its_own_server():
    p = params_with("simulate", base_url=["http://127.0.0.1:8001/v1", "http://127.0.0.1:8002/v1"],
                    start_vllm=True).simulate
    with pytest.raises(ParamsError, match=r"with openai.start_vllm the stage starts one server, here: give "
                                          r"http://127.0.0.1:<port>/v1 \(a list is for servers you start"):
        server_command(p, "models/base", trust_remote_code=False)
    with pytest.raises(ParamsError, match=r"simulate.openai.base_url: one URL, or a non-empty list of distinct URLs"):
        params_with("simulate", base_url=[])


def test_the_simulate_stage_stops_in_one_line_when_every_endpoint_is_dead(workdir):  # noqa: F811 (the fixture)
    root, model = workdir
    with refusing() as one, refusing() as two:
        result = simulate(root, model, SimpleNamespace(url=[one, two]), max_attempts=2)
    line = one_error_line(result)
    gone_for(line.removeprefix("Error: ").split("; 0 generation units finished")[0], one, two, attempts=2)
    # the first to go said so once, in the stage's log, while the other was left
    [went] = [line for line in result.stderr.splitlines() if ROTATION in line]
    assert re.search(rf"WARNING music_rm.generation.openai_backend: ({one}|{two}) {ROTATION} \(its last 2 attempts "
                     rf"failed; last error: connection failed", went)
    assert [p.name for p in (root / "out").iterdir()] == ["stage.log"]
