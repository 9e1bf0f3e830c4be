"""dvc.yaml's generated parts (`make deps`: music_rm/commands/deps.py): every stage's code deps are exactly the library
files its script loads, a package's folder where it loads all of it; its params are exactly the keys its script's
PARAMS declares, which are also all the stage can read."""
import os
import shutil
import subprocess
import sys

import yaml

from music_rm.commands.deps import (PACKAGE, closure, code_deps, declared_params, dvc_params, files,
                                    generated_code_dep, has_code, rewrite)
from music_rm.core.errors import UndeclaredParam
from music_rm.core.params import validate
from tests.conftest import REPO, models_folder, repo_params


def stages():
    """{name: (stage body, its script)} of dvc.yaml."""
    out = {}
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        stage = stage.get("do", stage)
        out[name] = stage, next(part for part in stage["cmd"].split() if part.startswith("stages/"))
    return out


def test_every_stage_declares_the_library_modules_it_imports():
    checked = 0
    for name, (stage, script) in stages().items():
        declared = {d for d in stage["deps"] if d.startswith("music_rm/") and generated_code_dep(d)}
        needed = set(code_deps(script))
        assert script in stage["deps"], name
        assert declared == needed, f"{name}: missing {needed - declared}, extra {declared - needed}: run `make deps`"
        checked += 1
    assert checked == len(stages()) >= 10


def test_editing_a_library_file_reruns_exactly_the_stages_that_load_it():
    """A folder dep covers every file in it: a stage lists a package's folder only when it loads every file there."""
    deps = {name: [d for d in stage["deps"] if d.startswith("music_rm/")] for name, (stage, _) in stages().items()}
    loaded = {name: files(closure(REPO / script)) for name, (_, script) in stages().items()}
    assert any(not d.endswith(".py") and (REPO / d / "__init__.py").is_file() for d in sum(deps.values(), []))
    for path in sorted(PACKAGE.rglob("*.py")):
        file = path.relative_to(REPO).as_posix()
        reruns = {name for name, listed in deps.items() if any(file == d or file.startswith(d + "/") for d in listed)}
        loads = {name for name, modules in loaded.items() if file in modules}
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        if has_code(name):
            assert reruns == loads, f"{file}: reruns {sorted(reruns)}, loaded by {sorted(loads)}"
        else:  # a docstring-only __init__.py: listed by no stage but with its whole package
            assert reruns <= loads, file


def test_every_stage_lists_the_params_its_script_declares():
    """dvc.yaml's params are the script's PARAMS, `{option}` as the command passes it (`${key}`, `${item.variant}`):
    a changed param reruns exactly the stages that read it."""
    for name, (stage, script) in stages().items():
        assert stage.get("params", []) == dvc_params(script, stage["cmd"]), f"{name}: run `make deps`"
    assert "mt_bench.limit" in stages()["mt_bench"][0]["params"]  # read since the stage's first version; now listed
    assert "reward_bench.limit" in stages()["reward_bench"][0]["params"]
    assert stages()["train"][0]["params"] == ["train.accelerate_config", "train.config", "train.variants.${item.variant}"]


def test_every_declared_param_is_a_key_of_params_yaml():
    params = validate(repo_params(
        judge={"pair_sets": {"x": "p.jsonl"}}, best_of_n={"prompt_sets": {"x": {"path": "p", "format": "hh", "limit": 1}}},
        mt_bench={"sources": {"x": {"questions": "q", "answers": "a", "human": "h", "gpt4": "g"}}},
        reward_bench={"sources": {"x": {"kind": "file", "path": "p", "format": "llmbar"}}}), "test")
    for name, (_, script) in stages().items():  # for_stage raises for a key params.yaml does not have
        declared = declared_params(script)
        assert params.for_stage(declared, variant="music", source="x", set="x").declared() or declared == (), name


def test_make_deps_rewrites_only_the_code_deps_and_the_params():
    """From stale deps and params (a code dep missing, one too many, a param missing, a list in block style) `make
    deps` writes dvc.yaml back as it is; the hand-written deps (data, models, templates) are kept in their order."""
    text = (REPO / "dvc.yaml").read_text(encoding="utf-8")
    assert rewrite(text) == text  # up to date (the tests above say which stage is not)
    stale = text.replace(" music_rm/method/contrast.py,", "", 1).replace(
        "data/decontaminate/dropped.json, models/base,", "data/decontaminate/dropped.json, models/base, "
        "music_rm/generation/cache.py,", 1).replace(" mt_bench.limit,", "", 1).replace(
        "    params: [contrast, ", "    params:\n      - contrast\n      - ", 1)
    listed = yaml.safe_load(text)["stages"]["fetch"]["deps"]
    block = "".join(f"      - {d}\n" for d in listed[::-1])
    start = stale.index("    deps: [data/check_params/checked.txt, stages/fetch.py,")
    stale = stale[:start] + "    deps:\n" + block + stale[stale.index("    params: [fetch]"):]
    assert stale.count("\n") != text.count("\n") and "mt_bench.limit" not in stale
    fetch = yaml.safe_load(rewrite(stale))["stages"]["fetch"]["deps"]
    assert fetch[:4] == ["${fetch.path}", "music_rm/data/seeds/embedded.jsonl", "stages/fetch.py",
                         "data/check_params/checked.txt"]
    assert rewrite(stale.replace(block, "".join(f"      - {d}\n" for d in listed))) == text


def test_dvc_yaml_stays_short_enough_to_read():
    """Issue 29's bound: the generated deps and params are flow lists, so the pipeline reads in about 300 lines."""
    assert (REPO / "dvc.yaml").read_text(encoding="utf-8").count("\n") <= 400


def test_a_stage_that_reads_a_param_it_does_not_declare_fails(shared, tiny_reward_model, tmp_path):
    """What let an 8-question MT-Bench score stand as the 80-question one: mt_bench.limit read, not declared. The
    stage's script with that key left out of its PARAMS stops at the read, naming the key."""
    script = tmp_path / "mt_bench.py"
    text = (REPO / "stages" / "mt_bench.py").read_text()
    assert '"mt_bench.limit", ' in text
    script.write_text(text.replace('"mt_bench.limit", ', "", 1))
    params = mt_bench_params(shared, tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, str(script), "--source", "shared", "--params", str(tmp_path / "params.yaml"),
                             "--models", str(models_folder(tmp_path, tiny_reward_model, ["tiny"])),
                             "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert result.returncode == 1 and f"{UndeclaredParam.__name__}: mt_bench.limit: read by a stage that does not " \
        "declare it" in result.stderr, result.stderr[-2000:]
    assert [f.name for f in (tmp_path / "out" / "shared").iterdir()] == ["stage.log"]  # no output, the log


def mt_bench_params(shared, tmp_path, limit=2) -> dict:
    params = repo_params()
    params["train"]["variants"] = {"tiny": {"pairs": "unused.jsonl"}}
    params["mt_bench"].update(max_length=64, batch_size=32, bootstrap_resamples=20, limit=limit, sources={"shared": {
        "questions": str(shared / "mt_bench" / "question.jsonl"), "answers": str(shared / "mt_bench" / "model_answer"),
        "human": str(shared / "mt_bench_human_judgments" / "human.jsonl"),
        "gpt4": str(shared / "mt_bench_human_judgments" / "gpt4_pair.jsonl")}})
    params["reward_bench"].update(max_length=64, batch_size=32, bootstrap_resamples=20, limit=4, sources={
        "llmbar": {"kind": "file", "path": str(shared / "llmbar"), "format": "llmbar"}})
    return params


def test_a_changed_limit_reruns_mt_bench_and_reward_bench_under_real_dvc(shared, tiny_reward_model, tmp_path):
    """The issue as a user met it: after `dvc repro`, changing mt_bench.limit (or reward_bench.limit) left
    `dvc status` clean, and the 8-question score stood as the 80-question one."""
    from tests.test_pipeline import copy_sources, run

    root = tmp_path / "clone"
    root.mkdir()
    copy_sources(root)
    (root / "params.yaml").write_text(yaml.safe_dump(mt_bench_params(shared, tmp_path), sort_keys=False))
    shutil.copytree(tiny_reward_model, root / "models" / "rm" / "tiny" / "seed-0")  # as train@tiny-0 leaves it
    (root / "unused.jsonl").touch()  # the variant's pairs: check_params refuses a path that exists nowhere
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    out = run(["dvc", "repro", "--single-item", "check_params", "mt_bench@shared", "reward_bench@llmbar"], root, timeout=900)
    assert "Running stage 'mt_bench@shared'" in out and "Running stage 'reward_bench@llmbar'" in out
    assert "up to date" in run(["dvc", "status", "mt_bench@shared", "reward_bench@llmbar"], root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["mt_bench"]["limit"], params["reward_bench"]["limit"] = 3, 5
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = run(["dvc", "status", "mt_bench@shared", "reward_bench@llmbar"], root)
    modified = [line.split() for line in status.splitlines() if "modified:" in line]
    assert modified == [["modified:", "mt_bench.limit"], ["modified:", "reward_bench.limit"]], status


def test_the_stages_that_load_data_or_train_can_be_restored_from_dvcs_run_cache():
    """DVC skips a stage it has run before with the same inputs (a queued grid's K=2 reuses K=1's baseline) only
    when every plain output is cached: one `cache: false` out that is not a metric or plot turns the run-cache off
    for its stage (dvc/stage/__init__.py, Stage.run). The stages listed here keep a readable file in git instead
    and replay their model calls from the generation and reward-score caches."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    kept_in_git = {}
    for name, stage in stages.items():
        for out in stage.get("do", stage).get("outs", []):
            if isinstance(out, dict) and next(iter(out.values())).get("cache", True) is False:
                kept_in_git.setdefault(name, []).append(next(iter(out)))
    assert set(kept_in_git) == {"simulate", "eval", "judge", "best_of_n", "mt_bench", "reward_bench"}, kept_in_git
    assert {"base_model", "fetch", "contrast", "train"} <= set(stages) - set(kept_in_git)


def test_every_stage_path_default_is_one_of_its_dvc_paths():
    """A path is named once in the library (music_rm/core/paths.py) and once in dvc.yaml: each stage script's
    path option defaults to a dep or out of its stage (or to the folder above some), so moving one without
    the other fails here."""
    import click

    from tests.test_help import stage_command

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    checked = 0
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        script = next(part for part in stage["cmd"].split() if part.startswith("stages/"))
        declared = [next(iter(entry)) if isinstance(entry, dict) else entry
                    for kind in ("deps", "outs", "metrics", "plots") for entry in stage.get(kind, [])]
        for option in stage_command(REPO / script).params:
            if isinstance(option, click.Option) and isinstance(option.type, click.Path) and option.default:
                default = str(option.default)
                assert any(d == default or d.startswith(default + "/") for d in declared), \
                    f"{name}: {script} {option.opts[0]} defaults to {default}, which dvc.yaml does not name"
                checked += 1
    assert checked >= 22
