"""Experiments on several machines, as two clones of one git remote on this host stand in for two machines: one
MLflow server on a real PostgreSQL (Debian's package) that both log to over HTTP, and a shared DVC remote (a local
folder) with the run cache, so one clone's finished stages are restored in the other, not rerun
(docs/cluster.md, Experiments on several machines). Only check_params and fetch run."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from music_rm.core.errors import StageFailure
from music_rm.core.run_cache import push_run_cache
from music_rm.core.tracking_server import free_port, postgres_program, stop
from tests.conftest import REPO
from tests.test_pipeline import copy_sources

GIT_USER = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def run(cmd, cwd, tracking_uri=None):
    env = {**os.environ, **GIT_USER, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for name in ("DVC_ROOT", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    """A bare git repository (the project's remote) whose clones share the DVC remote its .dvc/config names."""
    root = tmp_path_factory.mktemp("machines")
    work = root / "work"
    work.mkdir()
    copy_sources(work)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["fetch"]["limit"] = 20
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], work)
    run(["dvc", "init", "-q"], work)
    run(["dvc", "remote", "add", "-d", "shared", str(root / "dvc-remote")], work)
    run(["git", "add", "-A"], work)
    run(["git", "commit", "-qm", "tiny"], work)
    run(["git", "clone", "-q", "--bare", str(work), str(root / "origin.git")], root)
    return root


def clone(origin: Path, name: str) -> Path:
    run(["git", "clone", "-q", str(origin / "origin.git"), name], origin)
    return origin / name


@pytest.fixture
def tracking_server():
    """`music-rm tracking-server start` (stopped by the library's stop: no second start-up of the CLI) in a folder the postgres user can reach (pytest's tmp_path is root's
    only); stopped and removed after the test, whatever happens. Skipped without PostgreSQL (.ci/run installs it)."""
    try:
        postgres_program("initdb")
    except StageFailure as e:
        pytest.skip(str(e))
    folder = Path(tempfile.mkdtemp(prefix="music-rm-tracking-", dir="/tmp"))
    folder.chmod(0o755)
    command = [sys.executable, "-m", "music_rm", "tracking-server"]
    try:
        out = run([*command, "start", "--dir", str(folder), "--port", str(free_port())], REPO)
        yield out.strip().splitlines()[-1].removeprefix("export MLFLOW_TRACKING_URI="), out
    finally:
        stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_clones_log_to_one_postgresql_mlflow_server_share_the_run_cache_and_see_each_others_experiments(
        origin, tracking_server, monkeypatch):
    import mlflow

    from music_rm.core.tracking import PIPELINE_KEY_TAG, ui_url

    uri, started = tracking_server
    assert uri.startswith("http://127.0.0.1:") and "export MLFLOW_TRACKING_URI=" in started
    a, b = clone(origin, "a"), clone(origin, "b")
    ran = run(["dvc", "exp", "run", "-n", "from-a", "fetch"], a, uri)
    assert "Running stage 'check_params'" in ran and "Running stage 'fetch'" in ran
    # its outputs and run cache to the DVC remote, nothing to git; `dvc push --run-cache` alone leaves fetch's
    # summary.json (cache: false), so b would run fetch again
    monkeypatch.chdir(a)
    assert push_run_cache()[1] == 1  # what `music-rm push` (make push) runs, here in-process
    monkeypatch.chdir(origin)

    # b: a's finished stages, restored from the shared run cache, not rerun
    run(["dvc", "fetch", "--run-cache"], b)
    restored = run(["dvc", "repro", "--pull", "fetch"], b, uri)
    assert "Running stage" not in restored
    for stage in ("check_params", "fetch"):
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in restored
    for name in ("train.jsonl", "test.jsonl", "summary.json"):
        assert (b / "data/fetch" / name).read_bytes() == (a / "data/fetch" / name).read_bytes()
    # and an experiment of its own, which runs
    assert "Running stage 'fetch'" in run(["dvc", "exp", "run", "-n", "from-b", "-S", "fetch.test_fraction=0.4",
                                           "fetch"], b, uri)
    assert not (a / "mlflow.db").exists() and not (b / "mlflow.db").exists()  # nothing went to a local store

    client = mlflow.MlflowClient(uri)  # what either clone's MLflow sees: both clones' run trees
    runs = client.search_runs([client.get_experiment_by_name("music").experiment_id], max_results=100)
    parents = {r.data.tags["dvc_exp_name"]: r for r in runs if PIPELINE_KEY_TAG in r.data.tags}
    assert set(parents) == {"from-a", "from-b"}  # b's restore logged nothing: no stage ran
    assert parents["from-b"].info.run_name == "from-b: fetch.test_fraction=0.4"
    stage_runs = {r.info.run_name: r for r in runs if PIPELINE_KEY_TAG not in r.data.tags}
    assert set(stage_runs) == {"from-a/fetch", "from-b/fetch"}
    for name, parent in (("from-a/fetch", "from-a"), ("from-b/fetch", "from-b")):
        assert stage_runs[name].data.tags["mlflow.parentRunId"] == parents[parent].info.run_id
        assert stage_runs[name].info.status == "FINISHED" == parents[parent].info.status
    # a's stage log, kept by the server in its folder, read back over HTTP
    log = client.download_artifacts(stage_runs["from-a/fetch"].info.run_id, "stage.log", str(origin))
    assert "fetch: finished" in Path(log).read_text()

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert ui_url().startswith(f"{uri}/#/experiments/")  # make ui's address: the server's own page

    # DVC's side of the experiments: a pushes its experiment (git refs to origin, outputs to the DVC remote), b pulls
    run(["dvc", "exp", "push", "origin", "from-a"], a)
    run(["dvc", "exp", "pull", "origin", "from-a"], b)
    table = run([sys.executable, "-m", "music_rm", "exps", "--width", "120"], b, uri)
    rows = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    assert "from-a" in rows and "from-b" in rows and "0.4" in rows["from-b"], table
