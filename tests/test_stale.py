"""A variant removed from train.variants leaves nothing eval depends on: through real DVC, in a copy of the repo
whose train stages are recorded with `dvc commit` over tiny reward models (tests/test_seeds.py builds it)."""
import json
import shutil

import pytest
import yaml

from tests.test_contrast import m
from tests.test_pipeline import run
from tests.test_seeds import VARIANTS, built, set_params, write_jsonl  # noqa: F401 (built: the fixture)
from tests.test_secrets import run_failing

pytestmark = pytest.mark.integration


@pytest.fixture
def repo(built, tmp_path, tiny_reward_model):  # noqa: F811
    """The built repo with real (tiny) models, curves and held-out pairs, so that eval runs, and eval run."""
    root = tmp_path / "repo"
    shutil.copytree(built, root, symlinks=True)
    write_jsonl(root / "data/fetch/test.jsonl",
                [{"id": f"h{i}", "source": "seed", "chosen": [m("user", "hi"), m("assistant", f"hello {i}")],
                  "rejected": [m("user", "hi"), m("assistant", "go away")]} for i in range(4)])
    run(["dvc", "commit", "-f", "-q", "fetch"], root)
    for variant in VARIANTS:
        shutil.rmtree(root / f"models/rm/{variant}/seed-0")
        shutil.copytree(tiny_reward_model, root / f"models/rm/{variant}/seed-0")
        (root / f"data/train/{variant}/seed-0/curve.csv").write_text("step,loss,accuracy,margin\n1,0.69,0.5,0.0\n")
    run(["dvc", "commit", "-f", "-q", *(f"train@{v}-0" for v in VARIANTS)], root)
    set_params(root, lambda p: p["eval"].update(bootstrap_resamples=20))
    run(["dvc", "repro", "-s", "eval"], root)  # -s: the held-out pairs written above are not news upstream
    return root


def eval_dep(root, path) -> dict:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return next(d for d in lock["stages"]["eval"]["deps"] if d["path"] == path)


def files(folder) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and p.name != "stage.log")  # .dvcignore has stage.log


def test_removing_a_variant_removes_what_it_left_and_eval_depends_on_the_rest_only(repo):
    assert eval_dep(repo, "models/rm")["nfiles"] == files(repo / "models/rm")
    set_params(repo, lambda p: p["train"]["variants"].pop("volume_matched"))
    run(["dvc", "repro", "-s", "eval"], repo)
    log = (repo / "data/eval/stage.log").read_text()
    for folder in ("models/rm/volume_matched", "data/train/volume_matched"):
        assert f"removed {folder}: an output of a variant or seed no longer in train.variants × train.seeds " \
               "(baseline, music × 0)" in log
    assert not (repo / "models/rm/volume_matched").exists() and not (repo / "data/train/volume_matched").exists()
    assert (repo / "models/rm/music/seed-0/config.json").is_file()
    # eval's lock names the models and reports of the variants it scored, nothing else: a clone has the same
    assert eval_dep(repo, "models/rm")["nfiles"] == files(repo / "models/rm") == 2 * files(repo / "models/rm/music")  # a model and its .gitignore each
    assert eval_dep(repo, "data/train")["nfiles"] == files(repo / "data/train")
    scored = {v for suite in json.loads((repo / "data/eval/metrics.json").read_text())["suites"].values()
              for v in suite["models"]}
    assert scored >= {"baseline", "music"} and "volume_matched" not in scored
    assert json.loads(run(["dvc", "status", "--json", "eval"], repo)) == {}


def test_a_folder_no_stage_wrote_stops_eval_with_one_line_naming_it(repo):
    shutil.copytree(repo / "models/rm/music/seed-0", repo / "models/rm/by_hand/seed-0")
    failed = run_failing(["dvc", "repro", "-f", "-s", "eval"], repo)
    errors = [line for line in failed.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: models/rm/by_hand: not a model or report of train.variants × train.seeds (baseline, "
                      "music, volume_matched × 0), and no output dvc.lock records; a stage that depends on all of "
                      "models/rm would hash it in: move it out"]
    assert (repo / "models/rm/by_hand/seed-0/config.json").is_file()
