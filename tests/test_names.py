"""Names from params.yaml that DVC makes into stage names, paths and shell commands (train.variants, the judge's
pair sets, Best-of-N's prompt sets, MT-Bench's sources, RewardBench's sources, the seeds) are checked against one
safe pattern, in one line naming the key; through real DVC, in a copy of the repo, the check_params stage refuses
them before DVC runs any command they would reach, so an injected command never runs. (The accelerate config is
read by the train stage, not put into its command: reward/launch.py.)"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from music_rm.core.errors import ParamsError
from music_rm.core.params import validate
from tests.conftest import REPO, repo_params
from tests.test_pipeline import copy_sources, run

NAME_RULE = ("is not a usable name (it becomes a DVC stage name, a folder and a command argument): use letters, "
             "digits, _ and - only, starting with a letter or digit")
SHAPES = ["a b", "x; touch {marker}; echo", "../escape", "a.b", "-v", "x$(touch {marker})", "x`touch {marker}`"]
# Each mapping whose keys become stage names, and an entry of it
NAMED = {"train.variants": {"pairs": "data/fetch/train.jsonl"},
         "judge.pair_sets": "data/contrast/test.jsonl",
         "best_of_n.prompt_sets": {"path": "data/fetch/test.jsonl", "format": "schema", "limit": None},
         "mt_bench.sources": {"questions": "q.jsonl", "answers": "a", "human": "h.jsonl", "gpt4": "g.jsonl"},
         "reward_bench.sources": {"kind": "file", "path": "rb.jsonl", "format": "reward_bench"}}


def with_name(key: str, name: str) -> dict:
    section, field = key.split(".")
    return repo_params(**{section: {field: {name: NAMED[key]}}})


@pytest.mark.parametrize("key", NAMED)
@pytest.mark.parametrize("shape", SHAPES)
def test_a_name_outside_the_safe_pattern_is_one_line_naming_its_key(key, shape):
    name = shape.format(marker="/tmp/marker")
    with pytest.raises(ParamsError) as e:
        validate(with_name(key, name), "params.yaml")
    assert str(e.value) == f"params.yaml: {key}: {name!r} {NAME_RULE}"


def test_safe_names_pass():
    validate(with_name("train.variants", "music_K3-lr2"), "params.yaml")


def test_every_param_interpolated_into_a_command_is_one_the_params_model_checks():
    """The ${…} of every stage's cmd: a foreach key (a checked name), the matrix's variant (a name) and seed (an
    int); a new one must be added here, checked. (train's accelerate config and port are read by the stage:
    reward/launch.py.)"""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    interpolated = {m for s in stages.values() for m in re.findall(r"\$\{[^}]+\}", s.get("do", s)["cmd"])}
    assert interpolated == {"${key}", "${item.variant}", "${item.seed}"}
    foreach = {s["foreach"] for s in stages.values() if "foreach" in s}
    assert foreach == {"${train.variants}", *(f"${{{k}}}" for k in NAMED if k != "train.variants")}


def test_every_stage_depends_on_check_params_so_dvc_runs_it_first():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    [checked] = stages.pop("check_params")["outs"]
    assert stages and all(checked in s.get("do", s)["deps"] for s in stages.values())


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("names") / "repo"
    root.mkdir()
    copy_sources(root)
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    return root


@pytest.mark.parametrize("key, value", [
    ("train.variants", "x; touch {marker}; echo"), ("train.variants", "a b"), ("train.variants", "../escape"),
    ("train.variants", "a.b"), ("judge.pair_sets", "s;touch {marker}"), ("mt_bench.sources", "m$(touch {marker})"),
    ("train.seeds", ["0; touch {marker}"]),
])
def test_dvc_repro_refuses_an_unsafe_name_before_running_any_command(repo, tmp_path, key, value):
    marker = tmp_path / "injected"
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    section, field = key.split(".")
    if key in NAMED:
        params[section][field] = {value.format(marker=marker): NAMED[key]}
    else:
        params[section][field] = [v.format(marker=marker) for v in value] if isinstance(value, list) \
            else value.format(marker=marker)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.rmtree(repo / "data", ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DVC_ROOT", "MLFLOW_TRACKING_URI")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    result = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert re.findall(r"Running stage '([^']+)'", output) == ["check_params"], output
    [line] = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert line.startswith(f"Error: params.yaml: {key}"), line
    assert not marker.exists(), "the injected command ran"
    assert not (repo / "data").exists() or not any((repo / "data").rglob("*.jsonl"))


def test_a_file_named_like_a_command_is_read_as_a_file_and_never_run(repo):
    """File params (fetch.path here) are paths, not names: DVC hashes them as dependencies and the stage opens them;
    no command holds one (the test above), so a file whose name is shell syntax is data, and nothing it names runs."""
    data = repo / "rows; touch injected; $(touch injected-too) `touch injected-also`.jsonl"
    shutil.copy(REPO / "music_rm/data/seeds/embedded.jsonl", data)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["fetch"].update(source="path", path=data.name)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k not in ("DVC_ROOT", "MLFLOW_TRACKING_URI")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    result = subprocess.run(["dvc", "repro", "fetch"], cwd=repo, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.findall(r"Running stage '([^']+)'", output) == ["check_params", "fetch"], output
    assert (repo / "data/fetch/train.jsonl").stat().st_size > 0
    assert not list(repo.glob("injected*")), "a command in the file's name ran"
