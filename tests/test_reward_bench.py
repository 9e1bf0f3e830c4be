"""RewardBench: loading (its schema from a file, a dataset folder, LLMBar's files), upstream's section weighting,
and the stage script on the real LLMBar files in ../shared/data with a tiny random reward model."""
import json
import subprocess
import sys

import pytest
import yaml

from music_rm.core.errors import InputError
from music_rm.evaluation.reward_bench import EXAMPLE_COUNTS, from_llmbar, load_hub, load_local, scores
from tests.conftest import REPO, models_folder, run_stage


def rb_row(i, subset="llmbar-natural", chosen="A kind, correct answer.", rejected="A wrong one."):
    return {"prompt": f"Question {i}?", "chosen": chosen, "chosen_model": "m1", "rejected": rejected,
            "rejected_model": "m2", "subset": subset, "id": i}


def subset_arms(correct: dict) -> dict:
    """{subset: an Arm of one model whose outcomes are `correct[subset]` (1 right, 0 wrong, ½ a tie)}."""
    from music_rm.evaluation.estimates import arms
    from music_rm.evaluation.records import Record

    return {s: arms([Record.of(s, f"{s}-{i}", "m", 0, {1.0: 1.0, 0.0: -1.0, 0.5: 0.0}[x]) for i, x in enumerate(xs)])["m"]
            for s, xs in correct.items()}


def test_sections_are_weighted_by_upstream_example_counts_and_the_score_needs_all_four():
    correct = {"llmbar-natural": [1.0, 1.0], "llmbar-adver-neighbor": [0.0, 0.0], "math-prm": [1.0], "hep-python": [0.0]}
    out = scores(subset_arms(correct), resamples=200, seed=0)
    assert out["sections"]["Chat Hard"]["estimate"] == pytest.approx(100 / (100 + 134), abs=1e-6)
    assert out["sections"]["Reasoning"]["estimate"] == pytest.approx(984 / (984 + 164), abs=1e-6)  # math-prm upweighted
    assert out["sections"]["Chat Hard"]["subsets"] == 2 and out["sections"]["Chat Hard"]["of"] == 6
    assert "score" not in out and set(out["sections"]) == {"Chat Hard", "Reasoning"}
    correct.update({"alpacaeval-easy": [1.0, 0.0], "donotanswer": [1.0], "my-own-subset": [1.0]})
    out = scores(subset_arms(correct), resamples=200, seed=0)
    sections = [out["sections"][s]["estimate"] for s in ("Chat", "Chat Hard", "Safety", "Reasoning")]
    assert out["score"]["estimate"] == pytest.approx(sum(sections) / 4, abs=1e-6)
    assert out["score"]["ci_low"] <= out["score"]["estimate"] <= out["score"]["ci_high"]
    assert out["outside_sections"] == ["my-own-subset"] and out["subsets"]["my-own-subset"]["n"] == 1
    assert sum(EXAMPLE_COUNTS.values()) == 3522  # upstream's counts, math-prm as 984


def test_a_reward_tie_counts_half_and_is_counted():
    from music_rm.evaluation.estimates import arms
    from music_rm.evaluation.records import Record

    margins = {"hep-go": [0.0, 4e-7, 1.0], "donotanswer": [-2.0]}  # equal rewards to 6 decimals: a tie, not a loss
    out = scores({s: arms([Record.of(s, i, "m", 0, m) for i, m in enumerate(ms)])["m"] for s, ms in margins.items()},
                 resamples=50, seed=0)
    assert out["subsets"]["hep-go"]["estimate"] == pytest.approx(2 / 3, abs=1e-6) and out["subsets"]["hep-go"]["ties"] == 2
    assert out["ties"] == 2 and out["sections"]["Reasoning"]["ties"] == 2


def test_a_reward_bench_file_and_a_dataset_folder_load_the_same_pairs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [rb_row(i, subset) for i, subset in enumerate(["llmbar-natural", "hep-go", "donotanswer"])]
    (tmp_path / "hub" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "hub" / "data" / "filtered-00000-of-00001.parquet")
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from_file = load_local(str(tmp_path / "rows.jsonl"), "reward_bench")
    from_hub, resolved = load_hub(str(tmp_path / "hub"), "main", "filtered")
    assert from_file == from_hub and resolved == "local:" + str(tmp_path / "hub")
    assert [p["subset"] for p in from_file] == ["llmbar-natural", "hep-go", "donotanswer"]
    assert from_file[0]["chosen"] == [{"role": "user", "content": "Question 0?"},
                                      {"role": "assistant", "content": "A kind, correct answer."}]


@pytest.mark.parametrize("row, field, message", [
    ({"prompt": "q", "chosen": "a", "rejected": "b"}, "subset", "missing"),
    ({"prompt": "q", "chosen": 3, "rejected": "b", "subset": "x"}, "chosen", "expected a string"),
    ({"prompt": "q", "chosen": "same", "rejected": "same", "subset": "x"}, "rejected", "identical to chosen"),
])
def test_a_bad_row_is_named_by_file_row_and_field(tmp_path, row, field, message):
    path = tmp_path / "rb.jsonl"
    path.write_text(json.dumps(rb_row(1)) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(InputError) as e:
        load_local(str(path), "reward_bench")
    assert (e.value.row, e.value.field) == (2, field) and message in str(e.value) and str(path) in str(e.value)


def test_llmbar_files_become_the_five_chat_hard_subsets(shared):
    pairs = from_llmbar(shared / "llmbar")
    counts = {s: sum(p["subset"] == s for p in pairs) for s in {p["subset"] for p in pairs}}
    assert counts == {"llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92,
                      "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46}
    assert counts == {s: EXAMPLE_COUNTS[s] for s in counts}  # RewardBench holds LLMBar whole
    raw = json.loads((shared / "llmbar" / "LLMBar_Natural.json").read_text())
    second_better = next(i for i, r in enumerate(raw) if r["label"] == 2)
    assert pairs[second_better]["chosen"][1]["content"] == raw[second_better]["output_2"]
    assert pairs[second_better]["rejected"][1]["content"] == raw[second_better]["output_1"]


def test_the_stage_script_scores_llmbar_with_every_variant(shared, tiny_reward_model, tmp_path, report):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["variants"] = {"tiny": {"pairs": "unused.jsonl"}}
    params["reward_bench"].update(max_length=256, batch_size=32, bootstrap_resamples=200,
                                  sources={"llmbar": {"kind": "file", "path": str(shared / "llmbar"), "format": "llmbar"}})
    models = models_folder(tmp_path, tiny_reward_model, ["tiny"])
    result = run_stage("reward_bench.py", "--source", "llmbar", "--models", str(models), "--out", str(tmp_path / "out"),
                       tmp_path=tmp_path, params=params)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "llmbar" / "metrics.json").read_text())
    tiny = metrics["reward_models"]["tiny"]
    assert metrics["pairs"] == 419 and tiny["sections"]["Chat Hard"]["n"] == 419 and "score" not in tiny
    subset_acc = {s: r["estimate"] for s, r in tiny["subsets"].items()}
    weights = {s: EXAMPLE_COUNTS[s] for s in subset_acc}
    expected = sum(subset_acc[s] * weights[s] for s in subset_acc) / sum(weights.values())
    assert tiny["sections"]["Chat Hard"]["estimate"] == pytest.approx(expected, abs=1e-5)
    assert "| tiny |" in result.stdout
    # the records: every pair once per model, named by its LLMBar file and row; every number recomputed from them
    from music_rm.evaluation.estimates import by_suite, suite_result
    from music_rm.evaluation.records import read_records
    records = read_records(tmp_path / "out" / "llmbar" / "records.csv")
    assert len(records) == 2 * 419 and {r.variant for r in records} == {"tiny", "longer_answer"}
    natural = by_suite(records)["reward_bench/llmbar/llmbar-natural"]
    assert len(natural) == 200 and natural[0].item.startswith("LLMBar_Natural.json:")
    again = suite_result(natural, [], 200, 0, order=["tiny", "longer_answer"]).as_dict()
    assert again == metrics["suites"]["llmbar-natural"]
    assert again["models"]["tiny"] == tiny["subsets"]["llmbar-natural"]
    assert tiny["ties"] == sum(r.margin == 0 for r in records if r.variant == "tiny")
    report("RewardBench Chat Hard (LLMBar subsets from ../shared/data/llmbar), tiny random RM:\n"
           + (tmp_path / "out" / "llmbar" / "report.md").read_text().strip())


def test_the_hub_stage_reports_every_section_and_the_resolved_revision(tiny_reward_model, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    subsets = ["alpacaeval-easy", "llmbar-natural", "donotanswer", "math-prm", "hep-rust"]
    rows = [rb_row(i, subset, chosen=f"Answer {i} done well.", rejected=f"Answer {i} done badly.")
            for i, subset in enumerate(subsets * 3)]
    (tmp_path / "hub" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "hub" / "data" / "filtered-00000-of-00001.parquet")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["variants"] = {"a": {"pairs": "x"}, "b": {"pairs": "x"}}
    params["reward_bench"].update(bootstrap_resamples=100, sources={"rb": {
        "kind": "hf", "hf_dataset": str(tmp_path / "hub"), "hf_revision": "main", "hf_split": "filtered",
        "path": str(tmp_path / "hub")}})
    models = models_folder(tmp_path, tiny_reward_model, ["a", "b"])
    result = run_stage("reward_bench.py", "--source", "rb", "--models", str(models), "--out", str(tmp_path / "out"),
                       tmp_path=tmp_path, params=params)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "rb" / "metrics.json").read_text())
    assert metrics["resolved_revision"] == "local:" + str(tmp_path / "hub") and metrics["pairs"] == 15
    for variant in ("a", "b"):
        r = metrics["reward_models"][variant]
        assert set(r["sections"]) == {"Chat", "Chat Hard", "Safety", "Reasoning"}
        assert r["score"]["estimate"] == pytest.approx(sum(x["estimate"] for x in r["sections"].values()) / 4, abs=1e-5)
    from music_rm.evaluation.records import read_records
    records = read_records(tmp_path / "out" / "rb" / "records.csv")
    assert {(r.suite, r.item) for r in records} == {(f"reward_bench/rb/{row['subset']}", str(row["id"]))
                                                          for row in rows}  # the Hub row's id
    assert metrics["reward_models"]["a"] == metrics["reward_models"]["b"]  # the same model, the same scores
    assert "RewardBench score" in (tmp_path / "out" / "rb" / "report.md").read_text()


def test_a_limit_draws_pairs_with_the_seed_in_their_order():
    from music_rm.data.prompts import draw

    pairs = [{"source_id": i} for i in range(50)]
    drawn = draw(pairs, 10, 0)
    assert len(drawn) == 10 and drawn == sorted(drawn, key=lambda p: p["source_id"])
    assert draw(pairs, 10, 0) == drawn != draw(pairs, 10, 1)
    assert draw(pairs, None, 0) == pairs == draw(pairs, 60, 0)


def test_the_stage_script_names_a_source_of_reward_bench_sources(tmp_path):
    result = subprocess.run([sys.executable, "stages/reward_bench.py"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "Missing option '--source'" in result.stderr
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["reward_bench"]["sources"] = {"llmbar": {"kind": "file", "path": "x", "format": "llmbar"}}
    result = run_stage("reward_bench.py", "--source", "rb", tmp_path=tmp_path, params=params)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        "Error: reward_bench.sources: no source 'rb'; defined: ['llmbar']"]
