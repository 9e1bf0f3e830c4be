"""The simulate stage script on the openai backend against a fault-injecting server on 127.0.0.1."""
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import yaml

from music_rm.core.io import read_json, write_jsonl
from music_rm.data.sources import fetch
from tests.conftest import REPO
from tests.openai_fixture import FixtureServer
from tests.test_sources import params as fetch_params

KEY = "sk-fault-test-sentinel-9f8e7d"


@pytest.fixture
def workdir(tmp_path, tiny_model):
    train, test, _ = fetch(fetch_params())
    write_jsonl(tmp_path / "data" / "train.jsonl", train)
    write_jsonl(tmp_path / "data" / "test.jsonl", test)
    return tmp_path, tiny_model


def stage_command(root, model, server, max_attempts=6, **simulate_params):
    """The simulate stage's command line and environment, on `server` with small params."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["simulate"].update(backend="openai", turns=2, train_prompts=4, test_prompts=4, **simulate_params)
    params["simulate"]["openai"].update(base_url=server.url, model="fixture", api_key_env="MUSIC_FAULT_TEST_KEY",
                                        concurrency=4, timeout_s=1, max_attempts=max_attempts)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "MUSIC_FAULT_TEST_KEY": KEY, "MUSIC_CACHE_DIR": str(root / "cache"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    return [sys.executable, "stages/simulate.py", "--params", str(root / "params.yaml"), "--data", str(root / "data"),
            "--model", str(model), "--out", str(root / "out")], env


def simulate(root, model, server, max_attempts=6, **simulate_params):
    command, env = stage_command(root, model, server, max_attempts, **simulate_params)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)


def simulate_timed(root, model, server, max_attempts, timeout):
    """(the finished stage, when its error line came, when it exited): time.monotonic() on the stage's stderr as
    it is written, so the give-up is timed apart from the interpreter's exit after it."""
    command, env = stage_command(root, model, server, max_attempts)
    stderr, gave_up = [], []

    def read(stream):
        for line in stream:
            stderr.append(line)
            if line.startswith("Error:"):
                gave_up.append(time.monotonic())

    with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True) as stage:
        reader = threading.Thread(target=read, args=(stage.stderr,))
        reader.start()
        try:
            stage.wait(timeout)
        finally:
            stage.kill()  # a stage that did not end (the failure this checks) is not left running
            reader.join()
    ended = time.monotonic()
    return subprocess.CompletedProcess(command, stage.returncode, "", "".join(stderr)), gave_up[0], ended


def one_error_line(result) -> str:
    """The stage's one error line (it failed, without a traceback)."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.returncode == 1 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return errors[0]


def cached(root) -> int:
    with sqlite3.connect(root / "cache" / "generation.sqlite") as db:
        return db.execute("select count(*) from generations").fetchone()[0]


def test_simulate_completes_through_429_500_timeouts_and_malformed_json(workdir):
    root, model = workdir
    faults = ["429", "500", "timeout", "malformed", "drop", "503", "429", "malformed"]
    with FixtureServer(faults, timeout_sleep_s=1.5) as server:
        result = simulate(root, model, server)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not server.faults  # every injected fault was served and survived
    summary = read_json(root / "out" / "summary.json")
    assert summary["trees"] + summary["dropped"] == summary["seed_prompts"] == 8
    assert all(h["Authorization"] == f"Bearer {KEY}" for h in server.headers)
    assert KEY not in result.stdout + result.stderr


def test_a_permanent_failure_stops_cleanly_and_keeps_what_was_generated(workdir):
    root, model = workdir
    with FixtureServer(["ok"] * 6 + ["500"] * 10_000) as server:
        result = simulate(root, model, server, max_attempts=2)
        port = server.httpd.server_address[1]  # the same URL again below: it is part of the cache key
    line = one_error_line(result)
    assert "gave up after 2 attempts; last error: HTTP 500; " in line
    assert "generation units finished before the failure are kept in" in line
    assert [p.name for p in (root / "out").iterdir()] == ["stage.log"]  # the stage's log, and no output
    kept = cached(root)
    assert kept == 6

    with FixtureServer(port=port) as server:
        result = simulate(root, model, server)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"({kept} answered from the cache)" in result.stdout
    assert len(server.requests) == cached(root) - kept


@pytest.mark.parametrize("fault, reason", [
    ("trickle", "no whole reply within timeout_s = 1.0 s"),  # one byte every 0.5 s: each read well inside timeout_s
    ("truncated", "reply cut off after"),  # a body that stops short of its Content-Length
])
def test_a_server_that_never_sends_a_whole_reply_stops_the_stage_at_once_in_one_line(workdir, fault, reason):
    root, model = workdir
    with FixtureServer([fault] * 100, trickle_s=0.5) as server:
        result, gave_up, ended = simulate_timed(root, model, server, max_attempts=2, timeout=90)
        time.sleep(1)  # a worker left running would send another request
        starts = list(server.started)
    line = one_error_line(result)
    assert f"gave up after 2 attempts; last error: {reason}" in line
    # 4 workers × 2 attempts at most; the second attempts start within a deadline and a backoff (≤ 1 s) of the
    # first; the stage gives up within a deadline of the last one, with no request after it, and then exits
    # (the interpreter's own exit, torch and transformers loaded, took 1.6 to 3.2 s on a loaded 2-core machine)
    assert len(starts) <= 8 and starts[-1] - starts[0] < 1 + 1 + 0.5 and gave_up - starts[-1] < 1 + 0.5
    assert ended - gave_up < 15


@pytest.mark.parametrize("faults, reply, reason", [
    ([], lambda body: "", "rewrite_empty: 8"),  # every reply empty
    (["context"] * 1000, None, "prompt_too_long: 8"),  # every prompt over the served context
])
def test_a_run_that_keeps_no_tree_stops_with_the_reason_counts(workdir, faults, reply, reason):
    root, model = workdir
    with FixtureServer(faults, reply=reply) as server:
        result = simulate(root, model, server, max_attempts=1)
    assert one_error_line(result) == f"Error: simulate: every tree of the 8 prompts was dropped ({reason}); nothing to write"
    assert [p.name for p in (root / "out").iterdir()] == ["stage.log"]


def test_replies_cut_at_the_token_limit_are_counted_or_dropped(workdir):
    root, model = workdir
    # every reply cut at max_tokens, and none has a line break (a raw prompt's first line would have ended)
    with FixtureServer(["length"] * 10_000, reply=lambda body: f"a reply cut short {body['seed']}") as server:
        result = simulate(root, model, server, cache=False)
        assert result.returncode == 0, result.stderr[-3000:]
        summary = read_json(root / "out" / "summary.json")
        # per tree of 2 turns: 2 chosen answers, 2 rewrites, 2 hidden answers and the 2 next user messages of turn 1
        assert summary["trees"] == 8 and summary["cut_replies"] == 8 * 8
        assert "64 replies kept though cut at max_new_tokens" in result.stdout
        dropped = simulate(root, model, server, cache=False, cut_replies="drop", max_retries=1)
    assert one_error_line(dropped) == ("Error: simulate: every tree of the 8 prompts was dropped (cut_at_token_limit: "
                                       "8); nothing to write")


def test_trees_record_the_model_the_server_reports(workdir):
    root, model = workdir
    with FixtureServer(served_model="fixture-2025-06-01") as server:
        result = simulate(root, model, server)
    assert result.returncode == 0, result.stderr[-3000:]
    trees = [json.loads(line) for line in (root / "out" / "trees.jsonl").read_text().splitlines()]
    assert {json.dumps(t["provenance"]["model"], sort_keys=True) for t in trees} == {json.dumps(
        {"backend": "openai", "base_url": server.url, "requested_model": "fixture",
         "served_models": ["fixture-2025-06-01"]}, sort_keys=True)}
