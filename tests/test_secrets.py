"""Secrets never reach logs, outputs, MLflow or dvc.lock: the simulate stage through real DVC against a server on
127.0.0.1 that echoes the request's API key, in its replies and in an HTTP 400's body."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from music_rm.core.io import write_jsonl
from music_rm.data.sources import fetch
from tests.openai_fixture import FixtureServer
from tests.test_pipeline import copy_sources, run
from tests.test_sources import params as fetch_params

KEY = "sk-marker-3a9f1c07e2b54d68"
UNNAMED = "Bearer unnamed-token-5b8e2f41c9"  # token-shaped, but no variable of ours holds it


def test_redact_replaces_what_was_read_known_variables_and_token_shapes(monkeypatch):
    from music_rm.core.secrets import REDACTED, from_env, redact

    monkeypatch.setenv("MUSIC_REDACT_TEST", "a-secret-value-1234")
    monkeypatch.setenv("HF_TOKEN", "plain-hub-token-5678")
    assert from_env("MUSIC_REDACT_TEST") == "a-secret-value-1234"
    text = "key a-secret-value-1234, hub plain-hub-token-5678, Authorization: Bearer abc.def-ghi_jkl, sk-" + "x" * 20
    assert redact(text) == f"key {REDACTED}, hub {REDACTED}, Authorization: {REDACTED}, {REDACTED}"
    assert redact("a short word: sk-1, Bearer x") == "a short word: sk-1, Bearer x"


def leaks(root, *texts) -> list[str]:
    """The files under `root` (its git objects aside: compressed) and the texts that hold the key or the token."""
    files = [p for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts]
    assert any(p.name == "dvc.lock" for p in files) and any(p.name == "mlflow.db" for p in files)
    found = [str(p.relative_to(root)) for p in files
             if KEY.encode() in p.read_bytes() or UNNAMED.encode() in p.read_bytes()]
    return found + [t[:200] for t in texts if KEY in t or UNNAMED in t]


@pytest.mark.integration
def test_an_echoed_key_reaches_no_output_log_store_or_lock(tmp_path, tiny_model, monkeypatch):
    root = tmp_path / "repo"
    root.mkdir()
    copy_sources(root)
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    shutil.copytree(tiny_model, root / "models/base")
    train, test, _ = fetch(fetch_params())
    write_jsonl(root / "data/fetch/train.jsonl", train)
    write_jsonl(root / "data/fetch/test.jsonl", test)
    write_jsonl(root / "data/fetch/reserve.jsonl", [])  # fetch.reserve_fraction 0
    for name in ("data/base_model/environment.json", "data/fetch/environment.json", "data/fetch/summary.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}\n")
    run(["dvc", "repro", "check_params"], root)  # every stage depends on it
    run(["dvc", "commit", "-f", "-q", "base_model", "fetch"], root)
    monkeypatch.setenv("MUSIC_SECRET_TEST_KEY", KEY)
    echo = f"You sent Authorization: Bearer {KEY}; also {UNNAMED}."
    with FixtureServer(reply=lambda body: f"Sure, number {body['seed']}. {echo}") as server:
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["simulate"].update(backend="openai", turns=2, train_prompts=3, test_prompts=2)
        params["simulate"]["openai"].update(base_url=server.url, model="fixture", api_key_env="MUSIC_SECRET_TEST_KEY",
                                            concurrency=4, timeout_s=5, max_attempts=2)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        out = run(["dvc", "repro", "simulate"], root)
        assert "[redacted]" in (root / "data/simulate/trees.jsonl").read_text()
        assert leaks(root, out) == []

        server.faults = ["echo"] * 100  # an HTTP 400 whose body quotes the request's headers
        params["simulate"]["cache"] = False  # to the server again
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        failed = run_failing(["dvc", "repro", "simulate"], root)
    assert "HTTP 400 (not retried)" in failed.stderr and "Bearer [redacted]" in failed.stderr
    assert "HTTP 400 (not retried)" in (root / "data/simulate/stage.log").read_text()
    assert all(h["Authorization"] == f"Bearer {KEY}" for h in server.headers)  # the key did go where it belongs
    assert leaks(root, failed.stdout, failed.stderr) == []


def run_failing(cmd, cwd):
    """`run` of tests/test_pipeline.py, for a command that must fail."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DVC_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode != 0, result.stdout[-2000:]
    return result
