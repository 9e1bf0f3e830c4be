"""The two options on the training sets through real DVC, in a copy of the repo: `dvc exp run -S
contrast.length_balance=true` and `dvc exp run -S decontaminate.drop=true` each rerun what makes and trains on the
training pairs and nothing upstream; with drop off, a new suite reruns decontaminate and nothing after it. As in
tests/test_seeds.py, the stages upstream of decontaminate and the train, eval and judge stages are recorded with
`dvc commit` over stand-in outputs (what they hold does not decide what DVC reruns); decontaminate, contrast and
pairs@<variant> run for real."""
import json
import shutil
import sys
from pathlib import Path

import pytest

from music_rm.core.io import write_jsonl  # as fetch and simulate write their files
from tests.test_balance import length_trees, sided
from tests.test_contrast import m
from tests.test_pipeline import copy_sources, run
from tests.test_seeds import GIT, VARIANTS, set_params, stand_in

PAIRS = [f"pairs@{v}" for v in VARIANTS]
TRAIN = {f"train@{v}-0" for v in VARIANTS}
# a training prompt of 15 words that a judge set (suite.jsonl) also holds, its case and punctuation changed
COPIED = "Explain in three short paragraphs why the sky looks blue on a clear summer afternoon"


def suite_file(path: Path, prompt: str) -> None:
    write_jsonl(path, [{"id": "s", "chosen": [m("user", prompt), m("assistant", "because")],
                        "rejected": [m("user", prompt), m("assistant", "no idea")]}])


def commit_stand_ins(root, names) -> None:
    """Stand-in outputs for the stages `names`, recorded as run (a file for an out with a suffix, else a folder).
    Their outs as DVC resolves them, asked from the repo's folder (DVC reads its params.yaml from the working
    folder)."""
    outs = json.loads(run([sys.executable, "-c", "import json, sys; from dvc.repo import Repo; repo = Repo(); "
                           "print(json.dumps([o.def_path for n in sys.argv[1:] for s in repo.stage.collect(n) "
                           "for o in s.outs]))", *names], root))
    stand_in(root, *(path if Path(path).suffix else f"{path}/m" for path in outs))
    run(["dvc", "commit", "-f", "-q", *names], root)


def ran(out: str) -> set[str]:
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}


def changed(root) -> set[str]:
    return set(json.loads(run(["dvc", "status", "--json"], root)))


def read(root, path):
    return json.loads((root / path).read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("training-sets") / "repo"
    root.mkdir()
    copy_sources(root)
    suite_file(root / "suite.jsonl", COPIED.upper() + "!")
    set_params(root, lambda p: (p["train"]["config"].update(max_length=80),
                                p["judge"].update(pair_sets={"copy": "suite.jsonl"})))
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    shutil.copytree(tiny_model, root / "models/base")
    # original pairs: the chosen answer longer in 5, shorter in 2, as long in 1; the one with COPIED as its prompt
    originals = [sided(f"o{i}", s) for i, s in enumerate([1, 1, 1, 1, 1, -1, -1, 0])]
    originals[0]["chosen"][0]["content"] = originals[0]["rejected"][0]["content"] = COPIED
    write_jsonl(root / "data/fetch/train.jsonl", originals)
    write_jsonl(root / "data/fetch/test.jsonl", [sided("h0", 1), sided("h1", -1)])
    write_jsonl(root / "data/fetch/reserve.jsonl", [])  # fetch.reserve_fraction 0
    trees = length_trees()  # MUSIC pairs: chosen longer in 3 of 4
    for message in trees[-1]["chosen"] + trees[-1]["rejected"]:  # the held-out tree: words of its own
        if message["role"] == "user":
            message["content"] = f"held out {message['content']}"
    write_jsonl(root / "data/simulate/trees.jsonl", trees)
    stand_in(root, "data/base_model/environment.json", "data/fetch/environment.json", "data/fetch/summary.json",
             "data/simulate/sample.md", "data/simulate/environment.json", "data/simulate/summary.json")
    run(["dvc", "repro", "check_params"], root)
    run(["dvc", "commit", "-f", "-q", "base_model", "fetch", "simulate"], root)
    out = run(["dvc", "repro", *PAIRS], root)
    assert {"decontaminate", "contrast"} <= ran(out)
    commit_stand_ins(root, [*sorted(TRAIN), "eval", "judge@copy"])
    run(["git", "add", "-A"], root)
    run([*GIT, "commit", "-qm", "built"], root)
    assert changed(root) == set()
    return root


def test_the_default_counts_the_overlap_and_leaves_nothing_out(repo):
    summary = read(repo, "data/decontaminate/summary.json")
    assert summary["suites"]["judge/copy"] == {"items": 1, "items_overlapping": 1, "original_pairs_overlapping": 1,
                                               "music_trees_overlapping": 0}
    assert summary["drop"] is False and read(repo, "data/decontaminate/dropped.json") == {
        "original_pairs": [], "music_trees": []}
    assert (repo / "data/contrast/original.jsonl").read_bytes() == (repo / "data/fetch/train.jsonl").read_bytes()
    shares = read(repo, "data/contrast/summary.json")["chosen_longer"]
    assert shares["balanced"] is False and shares["original"]["after"]["share"] == 0.6875  # (5 + ½) / 8
    assert shares["train"]["after"]["share"] == 0.75


def test_length_balance_is_one_exp_run_that_reruns_contrast_pairs_and_what_trains_on_them(repo):
    out = run(["dvc", "exp", "run", "-S", "contrast.length_balance=true", *PAIRS], repo)
    assert ran(out) == {"check_params", "contrast", *PAIRS}  # not fetch, simulate or decontaminate
    assert changed(repo) == TRAIN | {"eval"}  # every variant's pairs changed; eval reads data/train
    assert ran(run(["dvc", "repro", "--dry"], repo)) == TRAIN | {"eval"}  # what `dvc exp run` goes on to run
    summary = read(repo, "data/contrast/summary.json")
    shares = summary["chosen_longer"]
    assert shares["balanced"] is True
    assert shares["original"]["before"] == {"pairs": 8, "longer": 5, "shorter": 2, "equal": 1, "share": 0.6875}
    assert shares["original"]["after"] == {"pairs": 5, "longer": 2, "shorter": 2, "equal": 1, "share": 0.5}
    assert shares["train"]["before"]["share"] == 0.75 and shares["train"]["after"]["pairs"] == 2
    assert summary["pairs_original"] == 5 and summary["pairs_train"] == 2
    assert summary["pairs_train_volume_matched"] == summary["pairs_train_with_original"] == 7
    assert shares["volume_matched"]["0"]["share"] == 0.5
    manifest = read(repo, "data/train/baseline/pairs/seed-0.json")
    assert manifest["pairs"] == "data/contrast/original.jsonl"  # the baseline trains on the balanced originals
    assert "0.6875 of 8 -> 0.5 of 5" in out


def test_dropping_overlaps_is_one_exp_run_that_leaves_the_pair_out_of_every_variant(repo):
    out = run(["dvc", "exp", "run", "-S", "decontaminate.drop=true", *PAIRS], repo)
    assert ran(out) == {"check_params", "decontaminate", "contrast", *PAIRS}
    assert changed(repo) == TRAIN | {"eval"}
    assert read(repo, "data/decontaminate/dropped.json") == {"original_pairs": ["o0"], "music_trees": []}
    assert read(repo, "data/contrast/summary.json")["decontaminated"] == {"original_pairs": 1, "music_trees": 0}
    for name in ("original.jsonl", "train_with_original.jsonl", "volume_matched/seed-0.jsonl"):
        ids = {json.loads(line)["id"] for line in (repo / "data/contrast" / name).read_text().splitlines()}
        assert "o0" not in ids and "o1" in ids, name
    assert "left out as overlapping an evaluation suite (decontaminate.drop): 1 original train pairs" in out


def test_with_drop_off_a_new_suite_reruns_decontaminate_and_nothing_after_it(repo):
    suite_file(repo / "suite2.jsonl", "nothing in common with training at all")
    set_params(repo, lambda p: p["judge"]["pair_sets"].update(other="suite2.jsonl"))
    out = run(["dvc", "repro", *PAIRS], repo)
    assert ran(out) == {"check_params", "decontaminate"}
    suites = read(repo, "data/decontaminate/summary.json")["suites"]
    assert suites["judge/other"]["items_overlapping"] == 0 and suites["judge/copy"]["items_overlapping"] == 1
    assert changed(repo) == {"judge@other"}  # the new suite's own stage, never run; no train stage
