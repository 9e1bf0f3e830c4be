"""params.yaml as one typed model: every key required, strict types, ranges, cross-section rules, one-line errors."""
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from music_rm.core.errors import ParamsError
from music_rm.core.io import atomic_path, read_jsonl, write_jsonl
from music_rm.core.params import Params, apply_profile, json_schema, load_params, validate
from tests.conftest import REPO, repo_params


def test_the_committed_params_validate_whole():
    p = load_params(REPO / "params.yaml")
    assert set(p.train.variants) >= {"baseline", "music"}
    assert p.simulate.turns >= 3 and p.contrast.turns <= p.simulate.turns


def test_the_model_gives_no_defaults_params_yaml_is_the_one_source():
    def fields(model):
        for name, field in model.model_fields.items():
            yield model.__name__, name, field
            inner = getattr(field.annotation, "model_fields", None)
            if inner is not None:
                yield from fields(field.annotation)

    with_default = [f"{m}.{n}" for m, n, f in fields(Params) if not f.is_required()]
    assert with_default == []


@pytest.mark.parametrize("section, key, value, message", [
    ("eval", "batch_size", "eight", "eval.batch_size: input should be a valid integer (got 'eight')"),
    ("simulate", "turns", "3", "simulate.turns: input should be a valid integer (got '3')"),
    ("contrast", "turns", True, "contrast.turns: input should be a valid integer (got True)"),
    ("fetch", "test_fraction", "0.3", "fetch.test_fraction: input should be a valid number (got '0.3')"),
    ("fetch", "test_fraction", 1.5, "fetch.test_fraction: input should be less than 1 (got 1.5)"),
    ("fetch", "on_invalid", "ignore", "fetch.on_invalid: input should be 'fail' or 'skip' (got 'ignore')"),
    ("train", "config", {"batch_size": 0}, "train.config.batch_size: input should be greater than or equal to 1 (got 0)"),
    ("simulate", "assistant", {"top_p": 0}, "simulate.assistant.top_p: input should be greater than 0 (got 0)"),
    ("fetch", "sorce", "hf", "fetch.sorce: unknown key"),
])
def test_a_wrong_type_value_or_key_is_one_error_naming_the_key(section, key, value, message):
    with pytest.raises(ParamsError) as e:
        validate(repo_params(**{section: {key: value}}), "params.yaml")
    assert str(e.value) == f"params.yaml: {message}"


def test_a_missing_key_is_named():
    raw = repo_params()
    del raw["judge"]["sampling"]["top_p"]
    with pytest.raises(ParamsError, match=r"^params.yaml: judge.sampling.top_p: missing"):
        validate(raw, "params.yaml")


def test_cross_section_rules_name_their_keys():
    with pytest.raises(ParamsError, match=r"contrast.turns: 4 is more than the 3 turns simulated"):
        validate(repo_params(contrast={"turns": 4}), "p")
    with pytest.raises(ParamsError, match=r"best_of_n.reference: 'x' is not one of best_of_n.variants"):
        validate(repo_params(best_of_n={"reference": "x"}), "p")
    on = {"prompt_sets": {"s": {"path": "x", "format": "auto", "limit": None}}, "variants": ["baseline", "gone"]}
    with pytest.raises(ParamsError, match=r"best_of_n.variants: \['gone'\] are not in train.variants"):
        validate(repo_params(best_of_n=on), "p")


@pytest.mark.parametrize("stage, args, section, key, value, message", [
    ("eval.py", [], "eval", "batch_size", "eight", "eval.batch_size: input should be a valid integer"),
    ("simulate.py", [], "simulate", "turns", "3", "simulate.turns: input should be a valid integer"),
])
def test_a_stage_given_a_bad_param_exits_1_with_one_line(tmp_path, stage, args, section, key, value, message):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params(**{section: {key: value}})))
    result = subprocess.run([sys.executable, f"stages/{stage}", "--params", str(tmp_path / "params.yaml"), *args],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1 and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_json_schema_of_params_and_of_a_profile():
    schema = json_schema()
    assert set(schema["required"]) == set(Params.model_fields)
    assert schema["additionalProperties"] is False
    profile = json_schema(profile=True)
    assert "required" not in json.dumps(profile)
    result = subprocess.run([sys.executable, "-m", "music_rm", "schema", "--profile"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0 and json.loads(result.stdout) == profile


def test_paper_profile_applies_and_validates():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    paper = validate(apply_profile(params, yaml.safe_load((REPO / "profiles" / "paper.yaml").read_text()), "paper"),
                     "paper")
    assert paper.simulate.backend == "openai" and paper.simulate.turns == 5 and not paper.simulate.openai.system_role
    assert paper.train.config.max_length == 2048 and paper.train.config.attn_implementation == "eager"
    assert paper.fetch.hf_dataset == "Skywork/Skywork-Reward-Preference-80K-v0.2"
    assert set(paper.train.variants) == set(params["train"]["variants"])  # untouched sections stay
    with pytest.raises(ParamsError, match="simulate.turn: unknown key"):
        apply_profile(params, {"simulate": {"turn": 5}}, "typo")
    with pytest.raises(ParamsError, match="simulat: unknown key"):
        apply_profile(params, {"simulat": {}}, "typo")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"
    write_jsonl(target, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_jsonl(target, rows())
    assert read_jsonl(target) == [{"a": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_atomic_folder_replaces_old_contents(tmp_path):
    folder = tmp_path / "model"
    for content in ("old", "new"):
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            (tmp / f"{content}.txt").write_text(content)
    assert [p.name for p in folder.iterdir()] == ["new.txt"]


def test_compare_says_which_numbers_leave_the_committed_intervals(tmp_path):
    import os

    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    path = tmp_path / "data" / "eval" / "metrics.json"
    path.parent.mkdir(parents=True)
    cell = lambda a, lo, hi: {"estimate": a, "ci_low": lo, "ci_high": hi, "n": 12}  # noqa: E731
    path.write_text(json.dumps({"music": {"original": cell(0.9, 0.75, 1.0), "music_k2": cell(0.5, 0.25, 0.75)}}))
    for cmd in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-qm", "x"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, env=env)
    path.write_text(json.dumps({"music": {"original": cell(0.8, 0.6, 0.9), "music_k2": cell(0.9, 0.7, 1.0)}}))
    result = subprocess.run([sys.executable, "-m", "music_rm", "compare"], cwd=tmp_path, capture_output=True, text=True,
                            env={**env, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert "music.music_k2: 0.900 now, 0.500 [0.25, 0.75] at HEAD" in result.stdout
    assert "1 of 2 rates lie inside the 95% intervals at HEAD" in result.stdout


def sections():
    """Every section model of params.yaml, nested ones included."""
    from music_rm.commands.schema import _sections_in

    found, todo = set(), [Params]
    while todo:
        model = todo.pop()
        found.add(model)
        todo += [s for f in model.model_fields.values() for _, s in _sections_in(f.annotation) if s not in found]
    return found


def test_every_key_has_one_description_and_no_default_in_the_model():
    fields = [(model.__name__, name, f) for model in sections() for name, f in model.model_fields.items()]
    assert len(fields) > 100
    assert [(m, n) for m, n, f in fields if not (f.description and f.is_required())] == []
    schema = json.dumps(json_schema())
    assert "Simulated assistant turns per branch" in schema  # `music-rm schema` prints them


def test_docs_params_md_is_generated_from_the_model():
    """`make docs` rewrites the generated part; this is the check that it was run."""
    from music_rm.commands.schema import MARKER, markdown

    text = (REPO / "docs" / "params.md").read_text(encoding="utf-8")
    assert MARKER in text and text[text.index(MARKER):] == markdown(), "docs/params.md is stale: run `make docs`"
    for model in sections():
        for name in model.model_fields:
            assert f"`{name}`" in text or f".{name}`" in text, name


def test_a_number_yaml_reads_as_a_string_gets_a_hint_how_to_write_it(tmp_path):
    text = (REPO / "params.yaml").read_text()
    line = next(line for line in text.splitlines() if line.strip().startswith("learning_rate:"))
    (tmp_path / "params.yaml").write_text(text.replace(line, line.split(":")[0] + ": 1e-5"))
    with pytest.raises(ParamsError) as e:
        load_params(tmp_path / "params.yaml")
    assert str(e.value) == (f"{tmp_path / 'params.yaml'}: train.config.learning_rate: input should be a valid number "
                            "(got '1e-5'; YAML reads 1e-5 as a string: write 1.0e-5)")
    (tmp_path / "params.yaml").write_text(text.replace(line, line.split(":")[0] + ": 1.0e-5"))
    assert load_params(tmp_path / "params.yaml").train.config.learning_rate == 1e-5


@pytest.mark.parametrize("section, key, value, module", [
    ("simulate", "backend", "vllm", "vllm"),
    ("judge", "backend", "vllm", "vllm"),
    ("train", "accelerate_config", "configs/accelerate/deepspeed_zero3.yaml", "deepspeed"),
])
def test_a_choice_whose_package_is_missing_is_refused_before_anything_is_created(tmp_path, section, key, value,
                                                                                  module):
    from importlib.util import find_spec

    if find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params(**{section: {key: value}})))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "MUSIC_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "stages/simulate.py", "--params", str(tmp_path / "params.yaml"),
                             "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, env=env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: {tmp_path / 'params.yaml'}: {section}.{key}: {value!r} needs the {module} "
                               f"package, which is not installed here: pip install ")
    assert lines[0].split("pip install ")[1].strip('"').startswith(module)  # pinned as pyproject.toml's extras pin it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no MLflow store, no cache, no outputs
    load_params(tmp_path / "params.yaml", packages=False)  # a plan for another machine still reads it


def test_a_stage_reads_the_keys_it_declares_and_no_other():
    """Params.for_stage: the view a stage has of the validated params (its script's PARAMS)."""
    from music_rm.core.errors import UndeclaredParam

    params = validate(repo_params(mt_bench={"sources": {"a": {"questions": "q", "answers": "a", "human": "h",
                                                              "gpt4": "g"}}}), "params.yaml")
    view = params.for_stage(("mt_bench.batch_size", "mt_bench.sources.{source}", "train.variants.{variant}",
                             "train.config.max_length", "contrast"), source="a", variant="music")
    assert view.mt_bench.batch_size == 8 and view.mt_bench.sources["a"].gpt4 == "g" and view.contrast.turns == 2
    assert view.train.variant("music").pairs == params.train.variants["music"].pairs  # a section's method reads it
    assert view.train.config.max_length == 512 and view.whole is params and params.whole is params
    for read, key in ((lambda: view.mt_bench.limit, "mt_bench.limit"), (lambda: view.eval, "eval"),
                      (lambda: view.train.config.epochs, "train.config.epochs"),
                      (lambda: view.train.variants["baseline"], "train.variants.baseline"),
                      (lambda: list(view.train.variants), "train.variants (every entry)"),
                      (lambda: sorted(view.mt_bench.sources), "mt_bench.sources (every entry)")):
        with pytest.raises(UndeclaredParam, match=rf"^{re.escape(key)}: read by a stage that does not declare it"):
            read()
    assert view.declared() == {  # what its MLflow run logs
        "mt_bench": {"batch_size": 8, "sources": {"a": {"questions": "q", "answers": "a", "human": "h", "gpt4": "g"}}},
        "train": {"variants": {"music": {"pairs": params.train.variants["music"].pairs}}, "config": {"max_length": 512}},
        "contrast": params.contrast.model_dump(mode="json")}
    with pytest.raises(ParamsError, match=r"^mt_bench.sources: no source 'b'; defined: \['a'\]$"):
        params.for_stage(("mt_bench.sources.{source}",), source="b")
    with pytest.raises(ValueError, match="mt_bench.nope: not a key of params.yaml"):
        params.for_stage(("mt_bench.nope",))


@pytest.mark.parametrize("source, message", [
    ({"kind": "zip", "path": "x"}, "reward_bench.sources.rb.kind: one of file, hf (got 'zip')"),
    ({"path": "x", "format": "llmbar"}, "reward_bench.sources.rb.kind: one of file, hf (missing)"),
    ({"kind": "hf", "hf_dataset": "allenai/reward-bench", "hf_revision": "main", "hf_split": "filtered"},
     "reward_bench.sources.rb.path: missing (params.yaml sets every key; see docs/params.md)"),
    ({"kind": "file", "path": "x", "format": "llmbar", "hf_split": "filtered"},
     "reward_bench.sources.rb.hf_split: unknown key"),
])
def test_a_reward_bench_source_is_checked_by_its_kind(source, message):
    with pytest.raises(ParamsError) as e:
        validate(repo_params(reward_bench={"sources": {"rb": source}}), "params.yaml")
    assert str(e.value) == f"params.yaml: {message}"
