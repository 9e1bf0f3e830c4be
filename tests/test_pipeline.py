"""Every stage, through real DVC, on the embedded SmolLM2 model and tiny params, in a copy of the repo."""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.integration
SOURCES = ["dvc.yaml", "params.yaml", "pyproject.toml", "stages", "music_rm", "configs"]


def run(cmd, cwd, **kwargs):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DVC_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def tiny(params: dict) -> dict:
    params["fetch"]["limit"] = 20
    params["simulate"].update(turns=2, limit=3, batch_size=8)
    for role in ("assistant", "user", "rewriter"):
        params["simulate"][role]["max_new_tokens"] = 16
    params["contrast"]["turns"] = 2
    params["train"]["config"].update(batch_size=4, max_length=384)
    return params


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    for name in SOURCES:
        src = REPO / name
        (shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
         if src.is_dir() else shutil.copy(src, root / name))
    params = tiny(yaml.safe_load((root / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "."], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"], root)
    run(["dvc", "init", "-q"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "dvc init"], root)
    commit = run(["git", "rev-parse", "HEAD"], root).strip()
    out = run(["dvc", "repro"], root)
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "repro"], root)
    return root, out, commit


def read(root, path):
    return json.loads((root / path).read_text())


def test_dvc_repro_runs_every_stage_and_eval_scores_both_variants(repo):
    root, out, _ = repo
    for stage in ("base_model", "fetch", "simulate", "contrast", "train@baseline", "train@music", "eval"):
        assert f"Running stage '{stage}'" in out
    fetch, contrast = read(root, "data/fetch/summary.json"), read(root, "data/contrast/summary.json")
    assert fetch["rows_kept"] == 20
    assert contrast["k"] == 2 and contrast["pairs_train"] > 0 and contrast["pairs_test"] > 0
    assert read(root, "data/train/baseline/metrics.json")["pairs"] == fetch["train"]
    assert read(root, "data/train/music/metrics.json")["pairs"] == fetch["train"] + contrast["pairs_train"]
    results = read(root, "data/eval/metrics.json")
    for variant in ("baseline", "music"):
        assert results[variant]["original"]["n"] == fetch["test"]
        assert results[variant]["music"]["n"] == contrast["pairs_test"]
        assert 0 <= results[variant]["music"]["accuracy"] <= 1
    trees = [json.loads(line) for line in (root / "data/simulate/trees.jsonl").read_text().splitlines()]
    assert all(len(t["hidden"]) == 2 for t in trees)


def test_mlflow_has_one_tagged_run_per_stage(repo):
    root, _, commit = repo
    with sqlite3.connect(root / "mlflow.db") as db:
        rows = db.execute("select r.name, t.key, t.value from runs r join tags t on t.run_uuid = r.run_uuid "
                          "where t.key in ('git_commit', 'dvc_exp_name', 'stage')").fetchall()
        metrics = dict(db.execute("select m.key, m.value from metrics m join runs r on r.run_uuid = m.run_uuid "
                                  "where r.name = 'workspace/eval'").fetchall())
    tags = {}
    for name, key, value in rows:
        tags.setdefault(name, {})[key] = value
    stages = {"base_model", "fetch", "simulate", "contrast", "train@baseline", "train@music", "eval"}
    assert set(tags) == {f"workspace/{s}" for s in stages}
    assert all(t["git_commit"] == commit and t["dvc_exp_name"] == "workspace" for t in tags.values())
    results = read(root, "data/eval/metrics.json")
    assert metrics["music.music.accuracy"] == pytest.approx(results["music"]["music"]["accuracy"])


def test_changing_contrast_turns_reruns_only_what_depends_on_it(repo):
    root, _, _ = repo
    out = run(["dvc", "exp", "run", "-S", "contrast.turns=1"], root)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"contrast", "train@music", "eval"}
    assert read(root, "data/contrast/summary.json")["k"] == 1
    shown = run(["dvc", "exp", "show", "--json"], root)
    rows = list(rows_of(json.loads(shown)))
    turns = [row["params"]["params.yaml"].get("data", {}).get("contrast", {}).get("turns") for row in rows]
    assert sorted(turns) == [1, 1, 2], shown[:3000]  # workspace and experiment at K=1, the commit at K=2
    evals = [row["metrics"].get("data/eval/metrics.json", {}).get("data", {}) for row in rows]
    assert all("baseline" in e and "music" in e for e in evals), shown[:3000]


def rows_of(node):
    """Every experiment row (params and metrics) in `dvc exp show --json` output."""
    if isinstance(node, dict):
        data = node.get("data")
        if isinstance(data, dict) and "params" in data and "metrics" in data:
            yield data
        for value in node.values():
            yield from rows_of(value)
    elif isinstance(node, list):
        for value in node:
            yield from rows_of(value)
