"""A study's results page (music-rm results) from real DVC experiments, and the relatedness statistics."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from music_rm.evaluation.study import experiments
from music_rm.method.simulate import relatedness, relatedness_stats

# The stage of the toy study: the metrics files the real pipeline writes, in their real shapes (made by the
# real statistics functions), with K-dependent margins so each experiment has its own numbers.
WRITE_METRICS = """
import json, pathlib, yaml
from music_rm.evaluation.heldout import differences
from music_rm.evaluation.stats import accuracy_summary
p = yaml.safe_load(open("params.yaml"))
k = p["contrast"]["turns"]
margins = {
    "baseline": {"original": [1, 1, -1, 1], "music_k1": [1, -1, -1, 1], "music_k2": [-1, -1, 1, 1]},
    "volume_matched": {"original": [1, 1, 1, -1], "music_k1": [1, -1, 1, -1], "music_k2": [-1, 1, -1, 1]},
    "music": {"original": [1, 1, 1, 1 - 2 * (k == 2)], "music_k1": [1, 1, 1 - 2 * (k == 2), 1],
              "music_k2": [1, 1, 1, 1 - 2 * (k == 1)]},
}
ev = {v: {s: accuracy_summary([float(x > 0) for x in m], 200, 0) for s, m in by_suite.items()}
      for v, by_suite in margins.items()}
ev["longer_answer"] = {s: accuracy_summary([1.0, 0.0, 1.0], 200, 0) for s in margins["music"]}
ev["differences"] = differences(margins, [["music", "baseline"], ["music", "volume_matched"]], 200, 0)
files = {
    "data/eval/metrics.json": ev,
    "data/fetch/summary.json": {"rows_read": 10, "rows_kept": 9, "skipped": 1, "skipped_by_reason": {"empty": 1},
                                "origin": "hh.jsonl", "train": 6, "test": 3, "multi_turn": 2},
    "data/simulate/summary.json": {"trees": 4, "trees_train": 3, "trees_test": 1, "seed_prompts": 4, "dropped": 0,
                                   "dropped_by_reason": {}, "relatedness": {"hidden_instructions": 2, "mean": 0.5,
                                   "median": 0.5, "share_unrelated": 0.0, "share_at_least_half": 0.5, "bins": {}}},
    "data/contrast/summary.json": {"pairs_train": 3 * k, "pairs_test": k},
}
for path, data in files.items():
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(path).write_text(json.dumps(data, indent=2, sort_keys=True))
pathlib.Path("data/model.bin").write_text(f"weights trained at K={k}")
"""

DVC_YAML = {"stages": {
    "simulate": {"cmd": "python write_metrics.py", "deps": ["write_metrics.py", "seed.jsonl"],
                 "params": ["contrast", "simulate"], "outs": ["data/model.bin"],
                 "metrics": [{f"data/{d}/{n}": {"cache": False}} for d, n in
                             (("eval", "metrics.json"), ("fetch", "summary.json"), ("simulate", "summary.json"),
                              ("contrast", "summary.json"))]}}}
PARAMS = {"fetch": {"n": 9}, "simulate": {"turns": 2}, "contrast": {"turns": 1}, "train": {"epochs": 1},
          "eval": {"resamples": 200}, "mt_bench": {"enabled": False}, "reward_bench": {"enabled": False}}


def run(cmd, cwd):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A git + DVC repo with two experiments, toy-k1 and toy-k2, and one named otherwise."""
    root = tmp_path_factory.mktemp("study")
    (root / "write_metrics.py").write_text(WRITE_METRICS)
    (root / "seed.jsonl").write_text('{"prompt": "hi"}\n')
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "toy study"], root)
    for name, k in (("toy-k2", 2), ("toy-k1", 1), ("other-k3", 3)):
        run(["dvc", "exp", "run", "-q", "-n", name, "-S", f"contrast.turns={k}"], root)
    return root


def test_results_page_has_one_row_per_trained_k_and_shared_models_once(study):
    out = run(["music-rm", "results", "toy", "--out", "results/toy.md"], study)
    assert "2 experiments (toy-k1, toy-k2)" in out.stdout
    page = (study / "results" / "toy.md").read_text()
    held_out = page.split("## Held-out pairs")[1].split("## Differences")[0]
    rows = [line.split(" | ")[0].lstrip("| ") for line in held_out.splitlines() if line.startswith("| ")][1:]
    assert rows == ["baseline", "volume_matched", "music, trained at K=1", "music, trained at K=2",
                    "longer answer wins"]
    # music at K=1 got music_k2's 4th pair wrong: 3 of 4; at K=2 it got original's 4th pair wrong
    k1_row = next(line for line in held_out.splitlines() if line.startswith("| music, trained at K=1"))
    assert k1_row.split(" | ")[1].startswith("1.000") and k1_row.split(" | ")[3].startswith("0.750")
    k2_row = next(line for line in held_out.splitlines() if line.startswith("| music, trained at K=2"))
    assert k2_row.split(" | ")[1].startswith("0.750")
    assert "| music − baseline, trained at K=1 |" in page and "| music − volume_matched, trained at K=2 |" in page
    assert "K=1: 3 train / 1 held out, K=2: 6 train / 2 held out" in page
    assert "other-k3" not in page and "(no MT-Bench results in these experiments)" in page
    for png in ("toy-accuracy-by-k.png", "toy-differences.png"):
        assert (study / "results" / png).read_bytes().startswith(b"\x89PNG")


def test_results_page_records_each_experiments_input_hashes_from_its_dvc_lock(study):
    run(["music-rm", "results", "toy", "--out", "results/toy.md"], study)
    page = (study / "results" / "toy.md").read_text()
    shown = json.loads(run(["dvc", "exp", "show", "--json"], study).stdout)
    revs = {}

    def walk(node):
        if isinstance(node, dict):
            if node.get("name") in ("toy-k1", "toy-k2") and isinstance(node.get("data"), dict):
                revs[node["name"]] = node["data"]["rev"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(shown)
    assert set(revs) == {"toy-k1", "toy-k2"}
    md5s = set()
    for name, rev in revs.items():
        lock = yaml.safe_load(run(["git", "show", f"{rev}:dvc.lock"], study).stdout)
        seed = next(d for d in lock["stages"]["simulate"]["deps"] if d["path"] == "seed.jsonl")
        model = next(o for o in lock["stages"]["simulate"]["outs"] if o["path"] == "data/model.bin")
        assert f"| {name} | simulate | seed.jsonl | {seed['md5']} |" in page
        assert f"| {name} | simulate | data/model.bin | {model['md5']} |" in page
        md5s.add(model["md5"])
    assert len(md5s) == 2  # each experiment's own outputs, not the workspace's


def test_results_twice_gives_the_same_bytes(study):
    files = ["toy.md", "toy-accuracy-by-k.png", "toy-differences.png"]
    run(["music-rm", "results", "toy", "--out", "results/toy.md"], study)
    first = {f: (study / "results" / f).read_bytes() for f in files}
    run(["music-rm", "results", "toy", "--out", "results/toy.md"], study)
    assert {f: (study / "results" / f).read_bytes() for f in files} == first


def test_results_of_a_study_without_experiments_is_one_line(study):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["music-rm", "results", "nosuch"], cwd=study, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "no DVC experiment named nosuch-*" in done.stderr
    assert not (study / "results" / "nosuch.md").exists()


def test_relatedness_is_the_jaccard_overlap_of_content_words():
    # content words: {write, poem, cat} and {write, poem, dog}: 2 shared of 4
    assert relatedness("Write a poem about cats", "Write a poem about dogs") == 0.5
    assert relatedness("Write a poem about cats.", "write A POEM about cat") == 1.0  # case, plural, punctuation
    assert relatedness("Tell me about Paris", "Sum the numbers 3 and 4") == 0.0
    assert relatedness("the and of", "a an") == 0.0  # stop words only


def test_relatedness_stats_bins_and_shares():
    hidden = [("write poem cat", "write poem dog"),  # 0.5
              ("paris", "numbers"),  # 0
              ("red blue green", "red blue green"),  # 1
              ("alpha beta gamma delta", "alpha zeta")]  # 1/5 = 0.2
    trees = [{"hidden": [{"original": a, "rewritten": b} for a, b in hidden[:2]]},
             {"hidden": [{"original": a, "rewritten": b} for a, b in hidden[2:]]}]
    stats = relatedness_stats(trees)
    assert stats["hidden_instructions"] == 4
    assert stats["mean"] == pytest.approx((0.5 + 0 + 1 + 0.2) / 4)
    assert stats["share_unrelated"] == 0.25 and stats["share_at_least_half"] == 0.5
    assert stats["bins"] == {"0": 1, "0-0.25": 1, "0.25-0.5": 1, "0.5-0.75": 0, "0.75-1": 1}
    assert relatedness_stats([{"hidden": []}]) == {"hidden_instructions": 0}


def test_an_experiment_still_running_is_left_out():
    """While a grid runs, `dvc exp show --json` lists the running experiment with rev "workspace"."""
    done = "52b4d65192" + "0" * 30
    show = [{"rev": "workspace", "data": {"rev": "workspace"}},
            {"experiments": [{"name": "s-k2", "data": {"rev": "workspace", "metrics": {}}},
                             {"name": "s-k1", "data": {"rev": done, "metrics": {}}}]}]
    files = {"params.yaml": "contrast: {turns: 1}\n", "dvc.lock": "schema: '2.0'\n"}
    read = lambda rev, path: files[path] if rev == done else pytest.fail(f"read {path} at {rev}")  # noqa: E731
    assert [(e["name"], e["k"]) for e in experiments(show, "s-", read)] == [("s-k1", 1)]
