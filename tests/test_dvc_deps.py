"""Every stage declares exactly the library modules its script imports, directly or through each other (`make deps`
writes them: music_rm/commands/deps.py)."""
import yaml

from music_rm.commands.deps import code_deps, rewrite
from tests.conftest import REPO


def test_every_stage_declares_the_library_modules_it_imports():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    checked = 0
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        script = next(part for part in stage["cmd"].split() if part.startswith("stages/"))
        declared = {d for d in stage["deps"] if isinstance(d, str) and d.startswith("music_rm/") and d.endswith(".py")}
        needed = set(code_deps(script))
        assert script in stage["deps"], name
        assert declared == needed, f"{name}: missing {needed - declared}, extra {declared - needed}: run `make deps`"
        checked += 1
    assert checked == len(stages) >= 10


def test_make_deps_rewrites_only_the_code_deps():
    text = (REPO / "dvc.yaml").read_text(encoding="utf-8")
    assert rewrite(text) == text  # up to date (the test above says which stage is not)
    stale = text.replace("      - music_rm/method/contrast.py\n", "", 1).replace(
        "      - stages/contrast.py\n", "      - stages/contrast.py\n      - music_rm/generation/cache.py\n", 1)
    assert stale != text and rewrite(stale) == text


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
    assert set(kept_in_git) == {"simulate", "eval", "judge", "best_of_n", "mt_bench", "reward_bench_file",
                                "reward_bench_hub"}, kept_in_git
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
