"""Every stage, through real DVC, on the embedded SmolLM2 model and tiny params, in a copy of the repo."""
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.integration
VARIANTS = ("baseline", "music", "volume_matched")
STAGES = {"check_params", "base_model", "fetch", "simulate", "decontaminate", "contrast",
          *(f"pairs@{v}" for v in VARIANTS), *(f"train@{v}-0" for v in VARIANTS), "eval", "judge@music", "best_of_n@heldout"}
SUITES = ("original", "music_k1", "music_k2", "music_k3")
# .gitignore included: DVC experiments stash what git neither tracks nor ignores (mlflow.db would be put back)
SOURCES = [".gitignore", ".dvcignore", "dvc.yaml", "params.yaml", "pyproject.toml", "stages", "music_rm", "configs", "profiles"]


def copy_sources(root: Path) -> None:
    for name in SOURCES:
        src = REPO / name
        (shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
         if src.is_dir() else shutil.copy(src, root / name))


def run(cmd, cwd, **kwargs):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DVC_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def tiny(params: dict) -> dict:
    params["fetch"]["limit"] = 20
    params["simulate"].update(turns=3, train_prompts=3, test_prompts=3, batch_size=8)
    for role in ("assistant", "user", "rewriter"):
        params["simulate"][role]["max_new_tokens"] = 16
    params["contrast"]["turns"] = 2
    params["train"]["config"].update(batch_size=4, max_length=384)
    params["judge"]["pair_sets"] = {"music": "data/contrast/test.jsonl"}  # the opt-in stages, on
    params["best_of_n"].update(prompt_sets={"heldout": {"path": "data/fetch/test.jsonl", "format": "schema", "limit": 2}},
                               turns=2, n=[2, 3])
    params["best_of_n"]["policy"]["max_new_tokens"] = 16
    return params


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    copy_sources(root)
    params = tiny(yaml.safe_load((root / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "."], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"], root)
    run(["dvc", "init", "-q", "--force"], root)
    shutil.copy(REPO / ".dvc/config", root / ".dvc/config")  # the repo's DVC settings (the offline plots page)
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "dvc init"], root)
    commit = run(["git", "rev-parse", "HEAD"], root).strip()
    out = run(["dvc", "repro"], root)
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "repro"], root)
    return root, out, commit


def read(root, path):
    return json.loads((root / path).read_text())


def test_dvc_repro_runs_every_stage_and_eval_scores_every_variant(repo):
    root, out, _ = repo
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    assert "git tag -a rm-music@v0.1.0" in out  # train's next step: dvc artifacts get needs a version tag
    fetch, contrast = read(root, "data/fetch/summary.json"), read(root, "data/contrast/summary.json")
    assert fetch["rows_kept"] == 20
    assert contrast["k"] == 2 and contrast["pairs_train"] > 0 and contrast["pairs_test"] > 0
    trained = {v: read(root, f"data/train/{v}/seed-0/metrics.json") for v in VARIANTS}
    assert trained["baseline"]["pairs"] == fetch["train"]
    assert trained["music"]["pairs"] == trained["volume_matched"]["pairs"] == fetch["train"] + contrast["pairs_train"]
    for metrics in trained.values():  # one epoch: every pair that fits, once, as the trainer counted them
        assert metrics["pairs_seen"] == metrics["distinct_pairs_seen"] == metrics["pairs_used"] and metrics["seed"] == 0
    assert read(root, "data/train/volume_matched/pairs/seed-0.json")["pairs"] == "data/contrast/volume_matched/seed-0.jsonl"
    results = read(root, "data/eval/metrics.json")["suites"]
    assert sorted(results) == ["music_k1", "music_k2", "music_k3", "original"]  # each K once
    for variant in ("baseline", "music", "volume_matched"):
        assert results["original"]["models"][variant]["n"] == fetch["test"]
        assert results["music_k2"]["models"][variant]["n"] == contrast["pairs_test"]  # the trained K
        r = results["music_k2"]["models"][variant]
        assert r["ci_low"] <= r["estimate"] <= r["ci_high"] and r["per_seed"]["0"]["estimate"] == r["estimate"]
    records = (root / "data/eval/records.csv").read_text().splitlines()
    assert len(records) == 1 + 4 * (fetch["test"] + contrast["pairs_test_by_k"])  # 3 models and longer_answer
    assert contrast["pairs_test_by_k"] == 3 * contrast["pairs_test"]
    assert (root / "data/eval/report.html").read_text().count("data:image/png;base64,") == 4  # by K, margins, rewards, curves
    trees = [json.loads(line) for line in (root / "data/simulate/trees.jsonl").read_text().splitlines()]
    assert all(len(t["hidden"]) == 3 for t in trees)
    best_of_n = read(root, "data/eval/best_of_n/heldout/metrics.json")
    assert read(root, "data/eval/judge/music/metrics.json")["pairs"] == contrast["pairs_test"]
    assert best_of_n["prompts"] == 2 and set(best_of_n["win_rates"]) == {
        f"{c}@{n}" for n in (2, 3) for c in ("baseline_vs_greedy", "music_vs_greedy", "music_vs_baseline", "longest_answer_vs_greedy",
                                         "shortest_answer_vs_greedy")}


def mlflow_client(root):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def mlflow_runs(root):
    """{run name: (run, parent's name)} of the store the stages wrote, read through MLflow's own client; a pipeline
    run by its DVC experiment's name (its run name also says what the experiment changed)."""
    import mlflow

    from music_rm.core.tracking import PIPELINE_KEY_TAG

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("music").experiment_id], max_results=1000)
    names = {r.info.run_id: r.data.tags["dvc_exp_name"] if PIPELINE_KEY_TAG in r.data.tags else r.info.run_name
             for r in runs}
    return {names[r.info.run_id]: (r, names.get(r.data.tags.get("mlflow.parentRunId"))) for r in runs}



def test_mlflow_run_tree_one_parent_nested_stage_runs_tagged_and_equal_to_dvc_metrics(repo):
    from music_rm.core.io import flatten

    root, _, commit = repo
    runs = mlflow_runs(root)
    workspace = {name: value for name, value in runs.items() if name.startswith("workspace")}
    # check_params and pairs@ compute nothing: one checks params.yaml, the other's manifests only name files
    tracked = {s for s in STAGES if not s.startswith("pairs@") and s != "check_params"}
    assert set(workspace) == {"workspace"} | {f"workspace/{s}" for s in tracked}
    parent = runs["workspace"][0]
    assert parent.data.tags["git_commit"] == commit and parent.data.tags["dvc_exp_name"] == "workspace"
    for stage in tracked:
        stage_run, parent_name = runs[f"workspace/{stage}"]
        assert parent_name == "workspace"
        assert stage_run.data.tags["git_commit"] == commit and stage_run.data.tags["dvc_exp_name"] == "workspace"
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    music_rm = next(o["md5"] for o in lock["train@music-0"]["outs"] if o["path"] == "models/rm/music/seed-0")
    eval_run = runs["workspace/eval"][0]
    assert eval_run.data.tags["data.models/rm/music/seed-0"] == music_rm
    assert {d.dataset.name for d in eval_run.inputs.dataset_inputs} >= {"data/fetch/test.jsonl", "models/rm/music/seed-0"}
    train_run = runs["workspace/train@music-0"][0]
    assert train_run.data.tags["model.path"] == "models/rm/music/seed-0" and len(train_run.data.tags["model.sha256"]) == 64
    client = mlflow_client(root)
    assert {a.path for a in client.list_artifacts(train_run.info.run_id)} >= {"curve.csv", "README.md", "stage.log"}
    model = client.get_logged_model(train_run.outputs.model_outputs[0].model_id)  # by reference: no copy in the store
    assert model.name == "rm-music" and model.tags["model.sha256"] == train_run.data.tags["model.sha256"]
    for stage in tracked:  # every stage's log, beside its outputs and on its run; neither git nor DVC sees it
        assert "stage.log" in {a.path for a in client.list_artifacts(runs[f"workspace/{stage}"][0].info.run_id)}
    assert (root / "data/eval/stage.log").read_text().count("scoring") == 3  # one line per (variant, seed)
    assert run(["git", "status", "--porcelain"], root) == "" and "changed" not in run(["dvc", "status"], root)
    expected = {k: float(v) for k, v in flatten(read(root, "data/eval/metrics.json")).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert eval_run.data.metrics == pytest.approx(expected)
    # a model's mean per suite; each seed's and the intervals stay on the stage run
    headline = {f"{m.group(1)}.{m.group(2)}.accuracy": v for k, v in expected.items()
                if (m := re.fullmatch(r"suites\.([^.]+)\.models\.([^.]+)\.estimate", k))}
    headline |= {f"{m.group(1)}.{m.group(2)}.length_controlled": v for k, v in expected.items()
                 if (m := re.fullmatch(r"suites\.([^.]+)\.models\.([^.]+)\.length\.controlled\.estimate", k))}
    assert {k[len("eval."):]: v for k, v in parent.data.metrics.items() if k.startswith("eval.")} == pytest.approx(headline)
    contrast = read(root, "data/contrast/summary.json")
    assert parent.data.metrics["contrast.pairs_train"] == contrast["pairs_train"]


def test_dvc_plots_render_offline(repo, tmp_path):
    """The page loads Vega from itself (configs/dvc/plots.html), not from a CDN; checked in headless Chromium
    with the network off when this was built (docs/tests.md)."""
    root, _, _ = repo
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], root)
    page = (tmp_path / "plots" / "index.html").read_text()
    assert "<script src=" not in page and "cdn." not in page
    assert page.count("vegaEmbed(") >= 5  # loss per variant, accuracy and margin
    assert "vega-embed@6" in page and "training accuracy" in page and "training margin" in page


def test_a_colleague_gets_a_trained_model_from_a_remote_without_retraining(repo, tmp_path):
    root, _, _ = repo
    weights = (root / "models/rm/music/seed-0/model.safetensors").read_bytes()
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], root)
    run(["dvc", "push", "train@music-0"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "remote"], root)
    # dvc artifacts get fetches a registered version: an annotated git tag <name>@v<semver> (GTO's format)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "tag", "-a", "rm-music@v0.1.0", "-m", "K=2"], root)
    got = tmp_path / "got"
    run(["dvc", "artifacts", "get", str(root), "rm-music", "-o", str(got)], tmp_path)  # a clone, as a colleague would
    assert (got / "model.safetensors").read_bytes() == weights and (got / "README.md").is_file()
    shutil.rmtree(root / "models/rm/music/seed-0")
    shutil.move(root / ".dvc/cache", tmp_path / "cache")  # as a fresh clone has it: nothing cached
    try:
        run(["dvc", "pull", "train@music-0"], root)
        assert (root / "models/rm/music/seed-0/model.safetensors").read_bytes() == weights
    finally:
        shutil.rmtree(root / ".dvc/cache")
        shutil.move(tmp_path / "cache", root / ".dvc/cache")


def test_changing_contrast_turns_reruns_only_what_depends_on_it(repo):
    root, _, _ = repo
    out = run(["dvc", "exp", "run", "-S", "contrast.turns=1"], root)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    # the control's draw is the same at K = 1 (as many MUSIC pairs fit): neither it nor baseline retrains
    assert ran - {"check_params"} == {"contrast", "pairs@music", "train@music-0", "eval", "judge@music",
                                     "best_of_n@heldout"}
    assert read(root, "data/contrast/summary.json")["k"] == 1
    shown = run(["dvc", "exp", "show", "--json"], root)
    rows = [node["data"] for node in walk_experiments(json.loads(shown))]
    turns = [row["params"]["params.yaml"].get("data", {}).get("contrast", {}).get("turns") for row in rows]
    assert sorted(turns) == [1, 1, 2], shown[:3000]  # workspace and experiment at K=1, the commit at K=2
    evals = [row["metrics"].get("data/eval/metrics.json", {}).get("data", {}) for row in rows]
    assert all({"baseline", "music"} <= set(e["suites"]["original"]["models"]) for e in evals), shown[:3000]
    # the experiment table: what changed (contrast.turns only) and every variant's accuracy on every suite
    table = run([sys.executable, "-m", "music_rm", "exps"], root)
    lines = table.splitlines()
    assert max(map(len, lines)) <= 120 and lines[1].split()[:2] == ["experiment", "contrast.turns"], table
    assert lines[0].split() == ["|", "baseline", "|", "music", "|", "volume_matched"], table
    assert lines[1].count("orig") == 3 and lines[1].count("k3") == 3, table
    assert sorted(line.split()[1] for line in lines[2:5]) == ["1", "1", "2"], table
    workspace = next(line for line in lines if line.startswith("workspace")).split()
    metrics = read(root, "data/eval/metrics.json")
    accuracy = lambda v, s: f"{metrics['suites'][s]['models'][v]['estimate']:.2f}"  # noqa: E731
    assert workspace[2:] == ["|", *(accuracy("baseline", s) for s in SUITES), "|", *(accuracy("music", s) for s in SUITES),
                             "|", *(accuracy("volume_matched", s) for s in SUITES)], table


def test_dvc_repro_dry_on_the_paper_profile_in_a_fresh_clone_lists_every_stage_and_runs_none(tmp_path):
    """Before any stage has run. `--force`: without it DVC's run-cache lookup hashes the deps of each stage even
    in a dry run and fails on the outputs no stage has produced yet."""
    root = tmp_path / "clone"
    root.mkdir()
    copy_sources(root)
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    run([sys.executable, "-m", "music_rm", "profile", "profiles/paper.yaml"], root)
    out = run(["dvc", "repro", "--dry", "--force"], root)
    paper = {"check_params", "base_model", "fetch", "simulate", "decontaminate", "contrast",
             *(f"pairs@{v}" for v in VARIANTS), *(f"train@{v}-0" for v in VARIANTS), "eval", "judge@music",
             "best_of_n@hh", "best_of_n@ultrainteract",
             *(f"reward_bench@{s}" for s in ("reward_bench", "reward_bench_2", "rm_bench", "rmb"))}
    assert {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")} == paper, out
    assert "python stages/train.py --variant music --seed 0" in out
    assert not (root / "dvc.lock").exists() and not (root / "data" / "fetch" / "train.jsonl").exists()


def test_a_queued_grid_runs_to_the_end_and_each_has_its_mlflow_tree(repo):
    """Values no earlier run used: DVC restores a stage it has run with the same inputs from its run-cache
    instead of running it, and a stage that does not run logs nothing."""
    root, _, _ = repo
    run(["git", "checkout", "--", "."], root)
    run(["dvc", "checkout", "-q"], root)
    run(["dvc", "exp", "run", "--queue", "-S", "contrast.turns=3", "-S", "eval.batch_size=2,3"], root)
    out = run(["dvc", "exp", "run", "--run-all"], root, timeout=1800)
    grid = {}
    for entry in walk_experiments(json.loads(run(["dvc", "exp", "show", "--json"], root))):
        params = entry["data"]["params"]["params.yaml"]["data"]
        metrics = entry["data"]["metrics"].get("data/eval/metrics.json", {}).get("data", {})
        if entry.get("name") and params["contrast"]["turns"] == 3 and "suites" in metrics:  # the variant
            grid[params["eval"]["batch_size"]] = entry["name"]
    assert set(grid) == {2, 3}, out[-3000:]
    runs = mlflow_runs(root)
    stages_run, trained = set(), []
    for batch_size, name in grid.items():
        assert name in runs and runs[name][1] is None, sorted(runs)
        assert runs[name][0].info.run_name == f"{name}: contrast.turns=3 eval.batch_size={batch_size}"
        nested = {run_name.split("/", 1)[1] for run_name, (_, parent) in runs.items() if parent == name}
        assert "eval" in nested
        assert all(runs[f"{name}/{stage}"][0].data.tags["dvc_exp_name"] == name for stage in nested)
        stages_run |= nested
        trained += ["train@music-0"] if "train@music-0" in nested else []
    assert stages_run == {"contrast", "train@music-0", "eval", "judge@music", "best_of_n@heldout"}  # pairs@ logs no run
    assert len(trained) == 1, out[-3000:]  # the first experiment trains at K=3; the other restores its model
    table = run([sys.executable, "-m", "music_rm", "exps"], root)
    assert "contrast.turns" in table and "batch_size" in table and "learning_rate" not in table, table
    assert all(any(line.startswith(name) for line in table.splitlines()) for name in grid.values()), table


def walk_experiments(node):
    """Every node of `dvc exp show --json` that carries an experiment's data (with its name, if any)."""
    if isinstance(node, dict):
        if isinstance(node.get("data"), dict) and "params" in node["data"]:
            yield node
        for value in node.values():
            yield from walk_experiments(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk_experiments(value)


def test_a_sentinel_api_key_reaches_the_server_and_nothing_else(repo, monkeypatch):
    """simulate on the openai backend through DVC, then every file of the repo (params, dvc.lock, the MLflow
    store and its artifacts, DVC's cache and logs, outputs) and the console output are searched for the key."""
    from tests.openai_fixture import FixtureServer

    root, _, _ = repo
    run(["git", "checkout", "--", "."], root)
    run(["dvc", "checkout", "-q"], root)
    sentinel = "sk-SENTINEL-" + uuid.uuid4().hex
    monkeypatch.setenv("MUSIC_SENTINEL_KEY", sentinel)
    with FixtureServer(["429", "500", "malformed"]) as server:
        out = run(["dvc", "exp", "run", "-S", "simulate.backend=openai", "-S", f"simulate.openai.base_url={server.url}",
                   "-S", "simulate.openai.model=fixture", "-S", "simulate.openai.api_key_env=MUSIC_SENTINEL_KEY"], root)
    assert "Running stage 'simulate'" in out and "Running stage 'eval'" in out
    assert server.requests and all(h["Authorization"] == f"Bearer {sentinel}" for h in server.headers)
    hits = [str(path) for path in root.rglob("*") if path.is_file() and sentinel.encode() in path.read_bytes()]
    assert hits == [] and sentinel not in out


# A bad value, per stage, for a key that stage reads, and the line that refuses it.
REFUSED = {
    "base_model": ("base.source", "nowhere", "base.source: input should be 'embedded' or 'hub' (got 'nowhere')"),
    "fetch": ("fetch.test_fraction", 1.5, "fetch.test_fraction: input should be less than 1 (got 1.5)"),
    "simulate": ("simulate.context_chars", 0, "simulate.context_chars: input should be greater than or equal to 1 "
                                              "(got 0)"),
    "contrast": ("contrast.min_relatedness", 2, "contrast.min_relatedness: input should be less than or equal to 1 "
                                                "(got 2)"),
    "pairs@baseline": ("train.seeds", [-1], "train.seeds.0: input should be greater than or equal to 0 (got -1)"),
    "train@music-0": ("train.config.lora_dropout", 1.0, "train.config.lora_dropout: input should be less than 1 "
                                                        "(got 1.0)"),
    "eval": ("eval.bootstrap_resamples", 0, "eval.bootstrap_resamples: input should be greater than or equal to 1 "
                                            "(got 0)"),
    "judge@music": ("judge.sampling.top_p", 0, "judge.sampling.top_p: input should be greater than 0 (got 0)"),
    "best_of_n@heldout": ("best_of_n.policy.temperature", 0.0, "best_of_n.policy.temperature: must be > 0, or the N "
                                                               "candidates would all be the same"),
    "mt_bench@shared": ("mt_bench.limit", 0, "mt_bench.limit: input should be greater than or equal to 1 (got 0)"),
    "reward_bench@mine": ("reward_bench.seed", "0", "reward_bench.seed: input should be a valid integer (got '0')"),
}


def set_key(params: dict, dotted: str, value) -> dict:
    node = params
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return params


def snapshot(root: Path) -> dict:
    """Every file of every stage's outputs (stage logs aside: they record each run) and dvc.lock, by content."""
    import hashlib

    files = [p for folder in ("data", "models") for p in (root / folder).rglob("*")
             if p.is_file() and p.name != "stage.log"]
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in files + [root / "dvc.lock"]}


def failed(cmd, root):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DVC_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith("Error: ")], result


def test_a_refused_param_leaves_every_earlier_output_of_every_stage_in_place(repo, shared, tmp_path, report):
    """For each stage, a bad value of a key it reads. `dvc repro`: check_params refuses it before DVC removes
    anything. `dvc repro -s <stage>` (the check skipped): the stage refuses it itself, after DVC removed its outputs,
    and puts them back from DVC's cache (its cache: false ones included)."""
    import time

    root, _, _ = repo
    run(["git", "checkout", "--", "."], root)
    run(["dvc", "checkout", "-q"], root)
    mine = tmp_path / "mine.jsonl"  # a RewardBench-schema file of the user's
    mine.write_text("".join(json.dumps({"id": i, "subset": "llmbar-natural", "prompt": f"Say {i}.", "chosen": f"{i}.",
                                        "rejected": "No."}) + "\n" for i in range(4)))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["mt_bench"].update(limit=1, max_length=128, bootstrap_resamples=50, sources={"shared": {
        "questions": str(shared / "mt_bench/question.jsonl"), "answers": str(shared / "mt_bench/model_answer"),
        "human": str(shared / "mt_bench_human_judgments/human.jsonl"),
        "gpt4": str(shared / "mt_bench_human_judgments/gpt4_pair.jsonl")}})
    params["reward_bench"].update(bootstrap_resamples=50, sources={"mine": {"kind": "file", "path": str(mine),
                                                                        "format": "reward_bench"}})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], root)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    # the check's mark is unchanged; decontaminate reads every suite, and finds nothing of the new ones in training
    assert ran - {"check_params"} == {"decontaminate", "mt_bench@shared", "reward_bench@mine"}, out
    good, before, took = (root / "params.yaml").read_text(), snapshot(root), {}
    for stage, (key, value, message) in REFUSED.items():
        (root / "params.yaml").write_text(yaml.safe_dump(set_key(yaml.safe_load(good), key, value), sort_keys=False))
        start = time.perf_counter()
        lines, result = failed(["dvc", "repro"], root)
        took[stage] = time.perf_counter() - start
        assert lines == [f"Error: params.yaml: {message}"], result.stderr[-3000:]
        assert snapshot(root) == before, stage
        assert "failed to reproduce 'check_params'" in result.stderr and "Running stage" not in result.stdout.replace(
            "Running stage 'check_params'", "")
        lines, result = failed(["dvc", "repro", "-s", stage], root)
        assert lines == [f"Error: params.yaml: {message}"] and f"failed to reproduce '{stage}'" in result.stderr
        assert snapshot(root) == before, stage
    assert set(REFUSED) | {"check_params"} <= {line.split()[0] for line in run(["dvc", "stage", "list"], root).splitlines()}
    (root / "params.yaml").write_text(good)
    assert "changed" not in run(["dvc", "status"], root)
    report("refused params through dvc repro, seconds per stage (check_params refusing): "
           + ", ".join(f"{s} {t:.1f}" for s, t in took.items()))
