"""MLflow run tree on a real SQLite store: parent per pipeline run, nested stage runs, tags, inputs, limits."""
import hashlib
import json
import logging
import subprocess

import mlflow
import pytest
import yaml

from music_rm.core.params import load_params, validate
from music_rm.core.tracking import (LOG_FILE, MAX_PARAM_KEY, MAX_PARAM_VALUE, VIEW_KEY, VIEW_TAG, git_commit,
                                    log_model_reference, log_results, mlflow_params, stage_run, ui_url)
from tests.conftest import REPO, repo_params

PARAMS = load_params(REPO / "params.yaml")


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_STAGE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "data.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"train@m": {"outs": [
        {"path": "models/rm/m", "md5": "0123456789abcdef0123456789abcdef.dir"}]}}}))
    return tmp_path


def runs():
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("music")
    return client, client.search_runs([experiment.experiment_id])


def test_stage_runs_nest_under_one_parent_per_pipeline_run(store, monkeypatch):
    with stage_run("fetch", PARAMS.for_stage(["fetch"]), inputs=["data.jsonl"]):
        log_results({"rows_kept": 3, "rows_read": 4}, {"rows_kept": 3})
    with stage_run("train@m", PARAMS.for_stage([])):
        log_results({"final_loss": 0.5, "padding_fraction": 0.2}, {"final_loss": 0.5})
    with stage_run("eval", PARAMS.for_stage(["eval"]), inputs=["models/rm"]):
        log_results({"original": {"music": {"estimate": 0.75, "ci_low": 0.5}}}, {"original.music.accuracy": 0.75},
                    view=True)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-one")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "b" * 40)
    with stage_run("eval", PARAMS.for_stage(["eval"])):
        log_results({"original": {"music": {"estimate": 0.5}}}, {"original.music.accuracy": 0.5}, view=True)

    client, all_runs = runs()
    parents = {r.data.tags["dvc_exp_name"]: r for r in all_runs if "stage" not in r.data.tags}
    stages = [r for r in all_runs if "stage" in r.data.tags]
    assert set(parents) == {"workspace", "exp-one"} and len(stages) == 4
    for stage in stages:
        parent = parents[stage.data.tags["dvc_exp_name"]]
        assert stage.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert stage.data.tags["git_commit"] == parent.data.tags["git_commit"] == git_commit()
        assert stage.info.run_name == f"{stage.data.tags['dvc_exp_name']}/{stage.data.tags['stage']}"
    assert parents["exp-one"].data.tags["dvc_baseline_rev"] == "b" * 40
    workspace = parents["workspace"]
    # the headline numbers only: details (an interval's bounds, the padding) stay on the stage runs
    assert workspace.data.metrics == {"fetch.rows_kept": 3.0, "train_m.final_loss": 0.5,
                                      "eval.original.music.accuracy": 0.75}
    eval_metrics = next(r for r in stages if r.data.tags["stage"] == "eval"
                        and r.data.tags["dvc_exp_name"] == "workspace").data.metrics
    assert {"original.music.estimate", "original.music.ci_low"} <= set(eval_metrics)
    first = min(r.info.start_time for r in stages if r.data.tags["dvc_exp_name"] == "workspace")
    last = max(r.info.end_time for r in stages if r.data.tags["dvc_exp_name"] == "workspace")
    assert workspace.info.start_time <= first and workspace.info.end_time >= last  # it spans its stages
    assert workspace.info.status == "FINISHED"
    music = client.get_experiment_by_name("music")
    assert music.tags["mlflow.experimentKind"] == "custom_model_development"
    assert ui_url(5001) == (f"http://127.0.0.1:5001/#/experiments/{music.experiment_id}/runs"
                            f"?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}")
    assert workspace.data.params == mlflow_params(PARAMS.model_dump(mode="json"))  # every param, from the one load
    fetch_params = next(r for r in stages if r.data.tags["stage"] == "fetch").data.params
    assert fetch_params == mlflow_params({"fetch": PARAMS.fetch.model_dump(mode="json")})  # the stage's section
    assert parents["exp-one"].data.metrics == {"eval.original.music.accuracy": 0.5}

    fetch_run = next(r for r in stages if r.data.tags["stage"] == "fetch")
    md5 = hashlib.md5(b'{"a": 1}\n').hexdigest()
    assert fetch_run.data.tags["data.data.jsonl"] == md5
    assert [(d.dataset.name, d.dataset.digest) for d in fetch_run.inputs.dataset_inputs] == [("data.jsonl", md5[:36])]
    eval_run = next(r for r in stages if r.data.tags["stage"] == "eval" and r.data.tags["dvc_exp_name"] == "workspace")
    assert eval_run.data.tags["data.models/rm/m"] == "0123456789abcdef0123456789abcdef.dir"


def test_params_over_mlflow_limits_are_clipped_and_kept_whole_as_an_artifact(store):
    long_value, long_name = "x" * (MAX_PARAM_VALUE + 500), "k" * (MAX_PARAM_KEY + 10)
    params = validate(repo_params(judge={"pair_sets": {long_name: "pairs.jsonl", "note": long_value}}), "test")
    view = params.for_stage(["judge.pair_sets"])
    with stage_run("judge@note", view) as run:
        run_id = run.active_run().info.run_id
    client, _ = runs()
    logged = client.get_run(run_id).data.params
    assert len(logged) == 2 and all(len(k) <= MAX_PARAM_KEY and len(v) <= MAX_PARAM_VALUE for k, v in logged.items())
    assert logged["judge.pair_sets.note"].startswith("xxx") and "...sha256:" in logged["judge.pair_sets.note"]
    assert mlflow_params({"a": "short"}) == {"a": "short"}
    artifact = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/params.json"))
    assert artifact == view.declared() == {"judge": {"pair_sets": {long_name: "pairs.jsonl", "note": long_value}}}


def test_the_pipeline_run_shows_running_while_a_later_stage_runs(store):
    with stage_run("fetch", PARAMS.for_stage(["fetch"])):
        pass
    with stage_run("eval", PARAMS.for_stage(["eval"])) as run:
        client = mlflow.MlflowClient()
        parent_id = run.active_run().data.tags["mlflow.parentRunId"]
        assert client.get_run(parent_id).info.status == "RUNNING"
    assert client.get_run(parent_id).info.status == "FINISHED"


def test_a_failing_stage_marks_its_run_failed(store):
    with pytest.raises(RuntimeError):
        with stage_run("fetch", PARAMS.for_stage([])):
            raise RuntimeError("boom")
    _, all_runs = runs()
    assert [r.info.status for r in all_runs if r.data.tags.get("stage") == "fetch"] == ["FAILED"]
    assert [r.info.status for r in all_runs if "stage" not in r.data.tags] == ["FAILED"]  # the pipeline run too


def test_the_machine_and_software_are_recorded_beside_the_outputs_and_in_the_run(store):
    env_file = store / "out" / "environment.json"
    with stage_run("fetch", PARAMS.for_stage(["fetch"]), environment_file=env_file) as run:
        run_id = run.active_run().info.run_id
        assert not env_file.exists()  # written with the outputs, once the stage has succeeded
    env = json.loads(env_file.read_text())
    import torch

    assert env["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0] and env["cpu_count"] >= 1
    assert {"cpu", "cpu_flags", "torch_threads", "gpus", "python"} <= env.keys()
    client, _ = runs()
    tags = client.get_run(run_id).data.tags
    assert tags["env.cpu"] == env["cpu"] and tags["env.packages.transformers"] == env["packages"]["transformers"]
    with stage_run("fetch", PARAMS.for_stage(["fetch"]), environment_file=env_file):
        pass
    assert json.loads(env_file.read_text()) == env  # the same machine writes the same bytes
    with pytest.raises(RuntimeError):
        with stage_run("fetch", PARAMS.for_stage(["fetch"]), environment_file=store / "failed" / "environment.json"):
            raise RuntimeError("boom")
    assert not (store / "failed" / "environment.json").exists()  # its log is there: see below


def kill_a_stage(store, stage: str) -> None:
    """A stage process SIGKILLed inside its MLflow run: its run and its pipeline's stay RUNNING."""
    import os
    import signal
    import sys

    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal\n"
        "from music_rm.core.params import load_params\n"
        "from music_rm.core.tracking import stage_run\n"
        f"with stage_run({stage!r}, load_params({str(REPO / 'params.yaml')!r}).for_stage(['fetch'])):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")], cwd=store, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert killed.returncode == -signal.SIGKILL


def test_a_stage_run_left_running_by_a_killed_process_is_ended_killed_by_the_next_stage(store):
    import os

    kill_a_stage(store, "fetch")
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])  # this store, not the last one a stage run set
    client, all_runs = runs()
    assert sorted(r.info.status for r in all_runs) == ["RUNNING", "RUNNING"]  # the stage's and its pipeline's
    alive = client.create_run(all_runs[0].info.experiment_id, tags={"music.host": all_runs[0].data.tags.get(
        "music.host", ""), "music.pid": str(os.getpid())})  # a stage still running (this process)
    with stage_run("fetch", PARAMS.for_stage(["fetch"])):
        pass
    client, after = runs()
    status = {(r.info.run_id, r.data.tags.get("stage")): r.info.status for r in after}
    stage_killed = next(r for r in all_runs if "stage" in r.data.tags)
    assert status[(stage_killed.info.run_id, "fetch")] == "KILLED"
    assert sorted(status.values()) == ["FINISHED", "FINISHED", "KILLED", "RUNNING"]  # pipeline run: FINISHED again
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"


def test_listing_the_runs_with_make_ui_or_make_exps_ends_a_killed_stage_s_runs_first(store):
    """No stage needs to run again: `make ui` (the command it runs before the server) and `music-rm exps` (what
    `make exps` runs) end the RUNNING runs of a dead process as KILLED, the stage's and its pipeline's, and say so."""
    import os
    import sys

    kill_a_stage(store, "train@music-0")
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    assert sorted(r.info.status for r in runs()[1]) == ["RUNNING", "RUNNING"]
    recipe = subprocess.run(["make", "-s", "-n", "ui", "PORT=5123"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout
    # the command before `mlflow ui` (what make prints for .venv, when it would remake it, is not run)
    [before_server] = [c for c in recipe.replace("\\\n\t", " ").splitlines() if "ui_url(" in c]
    shown = subprocess.run(["bash", "-c", before_server], cwd=REPO, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    stage = next(r for r in runs()[1] if "stage" in r.data.tags)
    pid, host = stage.data.tags["music.pid"], stage.data.tags["music.host"]
    assert shown.stdout.splitlines()[0] == (f"MLflow: workspace/train@music-0 ended as KILLED: its process {pid} on "
                                            f"{host} is gone")
    assert shown.stdout.splitlines()[1].startswith("runs: http://127.0.0.1:5123/#/experiments/")
    assert sorted(r.info.status for r in runs()[1]) == ["KILLED", "KILLED"]

    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=store, check=True)
    kill_a_stage(store, "eval")
    listed = subprocess.run([sys.executable, "-m", "music_rm", "exps"], cwd=store, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert "MLflow: workspace/eval ended as KILLED: its process" in listed.stderr
    assert [r.info.status for r in runs()[1]].count("RUNNING") == 0


def test_a_parent_is_named_after_what_it_changed_and_the_runs_table_view_shows_that_and_the_accuracies(store, monkeypatch):
    baseline = yaml.safe_load((REPO / "params.yaml").read_text())
    baseline["contrast"]["turns"] = 3  # the commit's value; the run's params say 2
    (store / "params.yaml").write_text(yaml.safe_dump(baseline))
    for cmd in (["init", "-q"], ["add", "params.yaml"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "k3"]):
        subprocess.run(["git", *cmd], cwd=store, check=True)
    monkeypatch.setenv("DVC_EXP_NAME", "gaunt-gram")
    with stage_run("eval", PARAMS.for_stage(["eval"])):
        log_results({"music_k2": {"music": {"estimate": 0.75, "ci_low": 0.5}}}, {"music_k2.music.accuracy": 0.75},
                    view=True)
        log_results({"pairs": 3}, {"pairs": 3})  # carried, not a column of the view
    client, all_runs = runs()
    parent = next(r for r in all_runs if "stage" not in r.data.tags)
    assert parent.info.run_name == "gaunt-gram: contrast.turns=2"
    assert parent.data.tags["mlflow.note.content"].startswith("contrast.turns: 3 → 2 (from commit ")  # description
    experiment = client.get_experiment_by_name("music")

    def columns():
        view = json.loads(client.get_experiment(experiment.experiment_id).tags[VIEW_TAG])
        assert view["name"] and isinstance(view["createdAt"], int)
        state = json.loads(view["state"])
        assert state["selectedColumns"] == state["columnOrder"]
        return state["selectedColumns"]

    # written when the pipeline run began, from the runs before it (none): not after each stage
    assert columns() == ["attributes.`Description`"]
    assert ui_url().endswith(f"&viewStateShareKey={VIEW_KEY}")  # `make ui` writes it as the runs are now
    assert columns() == ["attributes.`Description`", "params.`contrast.turns`", "metrics.`eval.music_k2.music.accuracy`"]


def test_a_trained_model_is_an_output_of_its_run_by_reference(store):
    with stage_run("train@m", PARAMS.for_stage([])) as run:
        run_id = run.active_run().info.run_id
        model_id = log_model_reference(run, "rm-m", "models/rm/m", "ab" * 32)
    client, _ = runs()
    assert [o.model_id for o in client.get_run(run_id).outputs.model_outputs] == [model_id]
    model = client.get_logged_model(model_id)
    assert (model.name, model.model_type, model.tags["model.path"]) == ("rm-m", "reward-model", "models/rm/m")
    assert model.source_run_id == run_id and client.list_artifacts(run_id, "model") == []


def test_a_stage_s_log_goes_beside_its_outputs_and_to_its_run_failed_or_not(store, caplog):
    caplog.set_level(logging.INFO)
    log = logging.getLogger("music_rm.stage")
    with stage_run("fetch", PARAMS.for_stage(["fetch"]), environment_file=store / "out" / "environment.json") as run:
        run_id = run.active_run().info.run_id
        log.info("kept 3 rows")
    text = (store / "out" / LOG_FILE).read_text()
    assert "INFO music_rm.stage: kept 3 rows" in text and f"fetch: MLflow run workspace/fetch ({run_id})" in text
    assert text.splitlines()[-1].endswith("fetch: finished")
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/{LOG_FILE}") == text
    with pytest.raises(RuntimeError):
        with stage_run("fetch", PARAMS.for_stage(["fetch"]), environment_file=store / "out" / "environment.json") as run:
            run_id = run.active_run().info.run_id
            log.error("row 7: no chosen field")
            raise RuntimeError("boom")
    text = (store / "out" / LOG_FILE).read_text()
    assert "row 7: no chosen field" in text and "kept 3 rows" not in text  # this run's log only
    assert text.splitlines()[-1].endswith("fetch: failed: RuntimeError: boom")
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/{LOG_FILE}") == text
    staged = store / ".music-rm-outputs.host.1.x" / "out" / "environment.json"  # as committed_outputs stages it
    with pytest.raises(RuntimeError):
        with stage_run("fetch", PARAMS.for_stage(["fetch"]), environment_file=staged):
            raise RuntimeError("staged")
    assert "staged" in (store / "out" / LOG_FILE).read_text() and not (staged.parent / LOG_FILE).exists()
    log.info("after the stage")
    assert "after the stage" not in (store / "out" / LOG_FILE).read_text()
