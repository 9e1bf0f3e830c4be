import pytest
import yaml

from music_rm.io import atomic_path, read_jsonl, write_jsonl
from music_rm.params import ParamsError, section
from tests.conftest import REPO


def test_committed_params_parse_into_every_section():
    for name in ("base", "fetch", "simulate", "contrast", "train", "eval"):
        section(name, REPO / "params.yaml")
    train = section("train", REPO / "params.yaml")
    assert set(train.variants) >= {"baseline", "music"}
    assert section("simulate", REPO / "params.yaml").turns >= 3
    assert section("contrast", REPO / "params.yaml").turns != 3


def test_unknown_key_and_bad_choice_are_named(tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["fetch"]["sorce"] = "hf"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"fetch: unknown key\(s\) \['sorce'\]"):
        section("fetch", tmp_path / "p.yaml")
    del raw["fetch"]["sorce"]
    raw["fetch"]["on_invalid"] = "ignore"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match="on_invalid must be one of"):
        section("fetch", tmp_path / "p.yaml")


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


def test_paper_profile_applies_and_validates(tmp_path):
    from music_rm.profile import apply_profile
    from music_rm.params import build_section

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    paper = apply_profile(params, yaml.safe_load((REPO / "profiles" / "paper.yaml").read_text()), "paper")
    simulate, train = build_section("simulate", paper, "paper"), build_section("train", paper, "paper")
    assert simulate.backend == "vllm" and simulate.turns == 5 and simulate.vllm.model == "google/gemma-2-9b-it"
    assert train.config.max_length == 2048 and train.config.attn_implementation == "eager"
    assert paper["fetch"]["hf_dataset"] == "Skywork/Skywork-Reward-Preference-80K-v0.2"
    assert paper["train"]["variants"] == params["train"]["variants"]  # untouched sections stay
    with pytest.raises(ParamsError, match="unknown key"):
        apply_profile(params, {"simulate": {"turn": 5}}, "typo")
    with pytest.raises(ParamsError, match="unknown section"):
        apply_profile(params, {"simulat": {}}, "typo")
