"""train.seeds through real DVC, in a copy of the repo: each (variant, seed) model is its own stage, a new seed
trains only its own stages, and a change of the contrast stage's output retrains only the variants whose pairs
changed. The stages upstream of contrast and the train stages are recorded with `dvc commit` over stand-in
outputs (what they hold does not decide what DVC reruns); contrast and pairs@<variant> run for real."""
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from music_rm.core.params import validate
from tests.conftest import REPO
from tests.test_contrast import m, tree
from tests.test_pipeline import copy_sources, run

VARIANTS = ("baseline", "music", "volume_matched")
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def stand_in(root, *paths):
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("{}\n")


def train_stages(seeds):
    return {f"train@{v}-{s}" for v in VARIANTS for s in seeds}


def commit_train_stages(root, seeds):
    """Stand-in models and reports for the train stages of `seeds`, recorded as run."""
    for variant in VARIANTS:
        for seed in seeds:
            stand_in(root, *(f"data/train/{variant}/seed-{seed}/{name}" for name in
                             ("environment.json", "metrics.json", "curve.csv")), f"models/rm/{variant}/seed-{seed}/m")
    run(["dvc", "commit", "-f", "-q", *sorted(train_stages(seeds))], root)
    run(["git", "add", "-A"], root)
    run([*GIT, "commit", "-qm", "train"], root)


def changed(root) -> set[str]:
    """The train stages `dvc status` reports as changed."""
    return {name for name in json.loads(run(["dvc", "status", "--json"], root)) if name.startswith("train@")}


def set_params(root, update):
    params = yaml.safe_load((root / "params.yaml").read_text())
    update(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("seeds") / "repo"
    root.mkdir()
    copy_sources(root)
    set_params(root, lambda p: p["train"]["config"].update(max_length=80))
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    shutil.copytree(tiny_model, root / "models/base")
    # short original pairs, and MUSIC trees of which two cannot train at K = 3 (a long third answer): at K = 3 the
    # volume-matched control draws 2 extra pairs instead of 4
    write_jsonl(root / "data/fetch/train.jsonl",
                [{"id": f"o{i}", "source": "seed", "chosen": [m("user", "hi"), m("assistant", f"hello {i}")],
                  "rejected": [m("user", "hi"), m("assistant", "go away")]} for i in range(6)])
    write_jsonl(root / "data/fetch/test.jsonl", [])
    write_jsonl(root / "data/fetch/reserve.jsonl", [])  # fetch.reserve_fraction 0
    trees = [tree(f"t{i}", "train") for i in range(4)] + [tree("x", "test")]
    for t in trees[:2]:
        t["chosen"][-1]["content"] = t["rejected"][-1]["content"] = "a long answer that goes on " * 12
    write_jsonl(root / "data/simulate/trees.jsonl", trees)
    stand_in(root, "data/base_model/environment.json", "data/fetch/environment.json", "data/fetch/summary.json",
             "data/simulate/sample.md", "data/simulate/environment.json", "data/simulate/summary.json")
    run(["dvc", "repro", "check_params"], root)
    run(["dvc", "commit", "-f", "-q", "base_model", "fetch", "simulate"], root)
    out = run(["dvc", "repro", *(f"pairs@{v}" for v in VARIANTS)], root)
    assert "Running stage 'contrast'" in out
    commit_train_stages(root, [0])
    assert changed(root) == set()
    return root


def test_train_stages_are_variant_by_seed(repo):
    names = {line.split()[0] for line in run(["dvc", "stage", "list"], repo).splitlines()}
    assert {f"pairs@{v}" for v in VARIANTS} | train_stages([0]) <= names
    manifest = json.loads((repo / "data/train/volume_matched/pairs/seed-0.json").read_text())
    assert manifest["pairs"] == "data/contrast/volume_matched/seed-0.jsonl" and len(manifest["sha256"]) == 64


def test_a_new_seed_trains_only_its_own_stages_and_draws_its_own_control(repo):
    set_params(repo, lambda p: p["train"].update(seeds=[0, 1]))
    before = (repo / "data/contrast/volume_matched/seed-0.jsonl").read_bytes()
    run(["dvc", "repro", *(f"pairs@{v}" for v in VARIANTS)], repo)
    assert (repo / "data/contrast/volume_matched/seed-0.jsonl").read_bytes() == before
    assert (repo / "data/contrast/volume_matched/seed-1.jsonl").read_bytes() != before
    assert changed(repo) == train_stages([1])
    dry = run(["dvc", "repro", "--dry", *sorted(train_stages([0, 1]))], repo)
    assert {s for s in train_stages([0, 1]) if f"Running stage '{s}'" in dry} == train_stages([1])


def test_a_new_contrast_output_retrains_music_and_the_control_not_baseline(repo):
    """What `dvc exp run -S contrast.turns=3` does: contrast reruns; the MUSIC pairs change, and so does the
    control's draw (fewer MUSIC pairs train at K = 3); the original pairs do not."""
    set_params(repo, lambda p: p["contrast"].update(turns=3))
    out = run(["dvc", "repro", *(f"pairs@{v}" for v in VARIANTS)], repo)
    assert "Running stage 'contrast'" in out and "Running stage 'pairs@baseline'" not in out
    assert changed(repo) == {"train@music-0", "train@volume_matched-0"}


def test_a_train_stage_refuses_pairs_its_manifest_does_not_stand_for(repo):
    """dvc.yaml's train command, run as DVC runs it (it launches accelerate on itself, so not in-process)."""
    with open(repo / "data/contrast/train_with_original.jsonl", "a") as f:
        f.write((repo / "data/fetch/train.jsonl").read_text().splitlines()[0] + "\n")
    result = subprocess.run([sys.executable, str(REPO / "stages/train.py"), "--variant", "music", "--seed", "0"],
                            cwd=repo, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "changed since the manifest was written; run `dvc repro pairs@music`" in result.stderr


def test_train_seeds_are_a_non_empty_list_of_distinct_seeds():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    with pytest.raises(Exception, match=r"train.seeds: each seed at most once, got \[0, 0\]"):
        validate({**params, "train": {**params["train"], "seeds": [0, 0]}}, "params.yaml")
    with pytest.raises(Exception, match=r"train.seeds: list should have at least 1 item"):
        validate({**params, "train": {**params["train"], "seeds": []}}, "params.yaml")
