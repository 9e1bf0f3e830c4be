"""The simulate stage script on the openai backend against a fault-injecting server on 127.0.0.1."""
import os
import sqlite3
import subprocess
import sys

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


def simulate(root, model, server, max_attempts=6):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["simulate"].update(backend="openai", turns=2, train_prompts=4, test_prompts=4)
    params["simulate"]["openai"].update(base_url=server.url, model="fixture", api_key_env="MUSIC_FAULT_TEST_KEY",
                                        concurrency=4, timeout_s=1, max_attempts=max_attempts)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "MUSIC_FAULT_TEST_KEY": KEY, "MUSIC_CACHE_DIR": str(root / "cache"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    return subprocess.run([sys.executable, "stages/simulate.py", "--params", str(root / "params.yaml"),
                           "--data", str(root / "data"), "--model", str(model), "--out", str(root / "out")],
                          cwd=REPO, env=env, capture_output=True, text=True)


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
    assert result.returncode == 1
    assert "gave up after 2 attempts; last error: HTTP 500" in result.stderr
    assert "generation units finished before the failure are kept in" in result.stderr
    assert "Traceback" not in result.stderr
    assert [p.name for p in (root / "out").iterdir()] == ["stage.log"]  # the stage's log, and no output
    kept = cached(root)
    assert kept == 6

    with FixtureServer(port=port) as server:
        result = simulate(root, model, server)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"({kept} answered from the cache)" in result.stdout
    assert len(server.requests) == cached(root) - kept
