"""Decontamination: training prompts against every suite's prompts by word n-grams (music_rm/data/ngrams.py,
music_rm/evaluation/contamination.py, stages/decontaminate.py); what contrast leaves out with decontaminate.drop."""
import json

import pytest

from music_rm.core.params import validate
from music_rm.data.ngrams import keys, words
from music_rm.data.sources import fetch
from music_rm.evaluation.contamination import decontaminate, overlaps
from music_rm.method.contrast import assemble
from tests.conftest import repo_params, run_stage
from tests.test_contrast import REAL_TREES, fits, original_pair, tree


def test_case_punctuation_unicode_forms_and_invisible_characters_do_not_change_the_words():
    assert words("Write a POEM—about cats!") == words("write a poem about cats") == \
        ["write", "a", "poem", "about", "cats"]
    assert words("ｆｕｌｌ－ｗｉｄｔｈ Ｌｅｔｔｅｒｓ") == ["full", "width", "letters"]  # NFKC
    assert words("zero\u200bwidth snake_case x²") == ["zerowidth", "snake", "case", "x2"]
    assert words("¿Qué   tal?\n\n¡Bien!") == ["qué", "tal", "bien"]


def test_a_shared_run_of_n_words_overlaps_and_one_word_fewer_does_not():
    text = " ".join(f"w{i}" for i in range(20))
    shared = " ".join(f"w{i}" for i in range(5, 18))  # 13 words of it
    near = " ".join(f"w{i}" for i in range(5, 17))  # 12
    assert keys([text], 13) & keys([f"other words {shared} more"], 13)
    assert not keys([text], 13) & keys([f"other words {near} more and more"], 13)


def test_a_prompt_under_n_words_overlaps_only_one_with_exactly_its_words():
    assert keys(["Tell me a joke."], 13) == {"tell me a joke"}
    assert keys(["TELL me a joke!!"], 13) == keys(["tell me a joke"], 13)
    long = "Tell me a joke about the sea and the ships that sail it in winter."
    assert not keys(["Tell me a joke."], 13) & keys([long], 13)
    assert keys(["...", "?"], 13) == set()  # no words: no key, never an overlap


def test_counts_per_suite_are_of_items_and_of_training_items():
    training = {"original_pairs": {"a": [["one two three four"]], "b": [["five six"]], "c": [["nine"]]},
                "music_trees": {"t": [["five six"], ["five six seven eight"]]}}
    suites = {"x": [[["one two three four"]], [["five six"]], [["ten"]]], "y": [[["five six"]]], "z": [[["nine!"]]]}
    counts, hits = overlaps(training, suites, 3)
    assert counts == {"x": {"items": 3, "items_overlapping": 2, "original_pairs_overlapping": 2,
                            "music_trees_overlapping": 1},
                      "y": {"items": 1, "items_overlapping": 1, "original_pairs_overlapping": 1,
                            "music_trees_overlapping": 1},
                      "z": {"items": 1, "items_overlapping": 1, "original_pairs_overlapping": 1,
                            "music_trees_overlapping": 0}}
    assert hits == {"original_pairs": {"a": ["x"], "b": ["x", "y"], "c": ["z"]}, "music_trees": {"t": ["x", "y"]}}


def llmbar_params(shared, **sections):
    return validate(repo_params(reward_bench={"sources": {"llmbar": {"kind": "file", "path": str(shared / "llmbar"),
                                                                     "format": "llmbar"}}},
                                mt_bench={"sources": {"shared": {
                                    "questions": str(shared / "mt_bench" / "question.jsonl"),
                                    "answers": str(shared / "mt_bench" / "model_answer"),
                                    "human": str(shared / "mt_bench_human_judgments" / "human.jsonl"),
                                    "gpt4": str(shared / "mt_bench_human_judgments" / "gpt4_pair.jsonl")}}},
                                **sections), "test")


def llmbar_prompt(shared, name: str, row: int) -> str:
    rows = json.loads((shared / "llmbar" / name).read_text())
    return rows[row - 1]["input"]


def test_real_suites_are_read_whole_and_an_injected_benchmark_prompt_is_found(shared):
    """The embedded seed pairs share no 13-gram with MT-Bench's 80 questions or LLMBar's 419 pairs (the counts are
    0); three LLMBar prompts put into training pairs, their case and punctuation changed: a 4-word one as a whole
    prompt and a 17-word one inside a longer prompt are found, a 12-word one inside a longer prompt is not (under
    13 words, only an exact match counts)."""
    params = llmbar_params(shared)
    train, test, _ = fetch(params.fetch)
    clean, _, _ = decontaminate(params, train, test, [])
    assert clean["suites"]["mt_bench/shared"] == {"items": 80, "items_overlapping": 0, "original_pairs_overlapping": 0,
                                                  "music_trees_overlapping": 0}
    assert clean["suites"]["reward_bench/llmbar"]["items"] == 419
    assert clean["overlapping"] == {"original_pairs": 0, "music_trees": 0}
    short, long, twelve = (llmbar_prompt(shared, "LLMBar_Natural.json", row) for row in (9, 14, 4))
    assert (len(words(short)), len(words(long)), len(words(twelve))) == (4, 17, 12)
    injected = [original_pair("inj-short", "x"), original_pair("inj-long", "x"), original_pair("inj-twelve", "x")]
    injected[0]["chosen"][0]["content"] = injected[0]["rejected"][0]["content"] = short.upper().replace(":", " -")
    for pair, text in ((injected[1], long), (injected[2], twelve)):
        pair["chosen"][0]["content"] = pair["rejected"][0]["content"] = f"Please help. {text.lower()} Thanks a lot!"
    summary, rows, dropped = decontaminate(params, train + injected, test, [])
    assert summary["suites"]["reward_bench/llmbar"] == {"items": 419, "items_overlapping": 2,
                                                        "original_pairs_overlapping": 2, "music_trees_overlapping": 0}
    assert rows == [{"kind": "original_pairs", "id": "inj-short", "suites": ["reward_bench/llmbar"]},
                    {"kind": "original_pairs", "id": "inj-long", "suites": ["reward_bench/llmbar"]}]
    assert summary["drop"] is False and dropped == {"original_pairs": [], "music_trees": []}
    drop = llmbar_params(shared, decontaminate={"drop": True})
    assert decontaminate(drop, train + injected, test, [])[2] == {"original_pairs": ["inj-long", "inj-short"],
                                                                   "music_trees": []}


def test_held_out_music_and_a_judge_set_cut_from_it_are_the_test_trees():
    """A judge set that is contrast's held-out output is written after decontaminate: it is counted as the test trees
    it is cut from; another contrast output is not counted, and the summary says why."""
    from music_rm.core.io import read_jsonl

    trees = read_jsonl(REAL_TREES)
    test_tree = next(t for t in trees if t["split"] == "test")
    conversation = " ".join(msg["content"] for msg in test_tree["chosen"] if msg["role"] == "user")  # simulated too
    training = original_pair("copy", "x")
    training["chosen"][0]["content"] = training["rejected"][0]["content"] = conversation
    params = validate(repo_params(judge={"pair_sets": {"music": "data/contrast/test.jsonl",
                                                       "train": "data/contrast/train.jsonl"}}), "test")
    summary, _, _ = decontaminate(params, [training], [], trees)
    held_out = summary["suites"]["held_out/music"]
    assert held_out == summary["suites"]["judge/music"] and held_out["items"] == 2
    assert held_out["items_overlapping"] == 1 and held_out["original_pairs_overlapping"] == 1
    assert summary["suites"]["judge/train"] == {"not_counted": "data/contrast/train.jsonl is written by contrast, "
                                                               "after decontaminate"}
    assert summary["training"] == {"original_pairs": 1, "music_trees": 8}


def test_contrast_leaves_out_the_listed_pairs_and_trees_of_every_variant():
    originals = [original_pair(f"o{i}") for i in range(4)]
    trees = [tree(f"t{i}", "train") for i in range(3)] + [tree("x", "test")]
    left_out = {"original_pairs": ["o1"], "music_trees": ["t2", "x"]}  # a held-out tree is never left out
    sets, draws, counts = assemble(originals, trees, 2, [0], fits, 0.0, False, 0, left_out=left_out)
    assert [p["id"] for p in sets["original"]] == ["o0", "o2", "o3"]
    assert [p["seed_id"] for p in sets["train"]] == ["seed-t0", "seed-t1"] and len(sets["test"]) == 1
    assert sets["train_with_original"] == sets["original"] + sets["train"]
    assert len(draws[0]) == 5 and all(p in sets["original"] for p in draws[0])
    assert counts["decontaminated"] == {"original_pairs": 1, "music_trees": 1}


def test_the_stage_writes_counts_overlaps_and_what_to_leave_out(tmp_path):
    """stages/decontaminate.py on the embedded seeds' split with a Best-of-N prompt set that copies two training
    prompts and a reserve pair's: the count, the overlapping rows, and with drop the ids contrast reads."""
    params = repo_params()
    train, test, _ = fetch(validate(params, "test").fetch)
    train, reserve = train[:2] + train[3:], [train[2]]
    for name, rows in (("train", train), ("reserve", reserve), ("test", test), ("prompts", train[:2] + reserve)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    params["best_of_n"]["prompt_sets"] = {"copy": {"path": str(tmp_path / "prompts.jsonl"), "format": "schema",
                                                   "limit": 1}}
    for drop in (False, True):
        params["decontaminate"]["drop"] = drop
        out = tmp_path / f"out-{drop}"
        result = run_stage("decontaminate.py", "--original", str(tmp_path / "train.jsonl"), "--reserve",
                           str(tmp_path / "reserve.jsonl"), "--heldout",
                           str(tmp_path / "test.jsonl"), "--trees", str(REAL_TREES), "--out", str(out),
                           tmp_path=tmp_path, params=params)
        assert result.returncode == 0, result.stderr[-3000:]
        summary = json.loads((out / "summary.json").read_text())
        copied = summary["suites"]["best_of_n/copy"]
        assert copied["items"] == 3 and copied["items_overlapping"] == 3  # the whole set, not its limit of 1
        assert copied["original_pairs_overlapping"] >= 3  # the three copied, and any pair with the same prompt
        assert summary["training"]["original_pairs"] == len(train) + len(reserve)
        overlapping = [json.loads(line) for line in (out / "overlaps.jsonl").read_text().splitlines()]
        assert {train[0]["id"], train[1]["id"], reserve[0]["id"]} <= {r["id"] for r in overlapping
                                                                      if r["kind"] == "original_pairs"}
        dropped = json.loads((out / "dropped.json").read_text())
        assert dropped["original_pairs"] == (sorted(r["id"] for r in overlapping if r["kind"] == "original_pairs")
                                             if drop else [])
        assert "best_of_n/copy: 3 of 3 items overlap training" in result.stdout
        assert f"(decontaminate.drop {str(drop).lower()})" in result.stdout


@pytest.mark.parametrize("bad", [{"ngram": 0}, {"drop": "yes"}])
def test_bad_decontaminate_params_are_one_line(bad):
    with pytest.raises(Exception, match=r"decontaminate\.(ngram|drop): "):
        validate(repo_params(decontaminate=bad), "params.yaml")
