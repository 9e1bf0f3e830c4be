"""The MT-Bench human-agreement suite on the real files in ../shared/data, with a tiny random reward model."""
import pytest

from music_rm.core.errors import InputError
from music_rm.evaluation.mt_bench import agreement, baselines, load, score_conversations, table
from music_rm.reward.model import load_reward_model


@pytest.fixture(scope="module")
def mt_bench(shared):
    return load(shared / "mt_bench" / "question.jsonl", shared / "mt_bench" / "model_answer",
                shared / "mt_bench_human_judgments" / "human.jsonl", shared / "mt_bench_human_judgments" / "gpt4_pair.jsonl",
                None, 0)


def test_votes_and_conversations_are_rebuilt(mt_bench):
    votes, gpt4, conversations = mt_bench
    assert len(votes) == 3355 - 780  # the README's vote and tie counts
    assert len(conversations) == 6 * 80 and len(gpt4) == 2400
    conv = conversations[("gpt-4", 81)]
    assert [m["role"] for m in conv] == ["user", "assistant"] * 2 and conv[0]["content"].startswith("Compose an engaging")


def test_baselines_match_the_published_length_baseline(mt_bench):
    votes, gpt4, conversations = mt_bench
    base = baselines(votes, gpt4, conversations, 200, 0)
    assert base["longer_wins.turn2"]["accuracy"] == pytest.approx(0.696, abs=0.0005)  # 69.6% in the issue
    assert 0.6 < base["gpt4.turn1"]["accuracy"] < 0.9 and 0.6 < base["gpt4.turn2"]["accuracy"] < 0.9


def test_reward_model_agreement_table(mt_bench, tiny_reward_model, report):
    votes, gpt4, conversations = mt_bench
    rewards = score_conversations(load_reward_model(str(tiny_reward_model)), conversations, batch_size=16,
                                  max_length=256, desc="tiny")
    result = agreement(rewards, votes, conversations, 200, 0)
    for turn in (1, 2):
        r = result[f"turn{turn}"]
        assert r["n"] == sum(v["turn"] == turn for v in votes) and r["ci_low"] <= r["accuracy"] <= r["ci_high"]
        assert 0 < result[f"turn{turn}_shorter_preferred"]["n"] < r["n"]
        assert -1 <= result[f"turn{turn}_reward_length_spearman"] <= 1
    text = table({"tiny-random": result}, baselines(votes, gpt4, conversations, 200, 0))
    assert text.count("\n") == 4
    report("MT-Bench human agreement (non-tie votes), a tiny random-init reward model:\n" + text)


def test_a_missing_answer_file_is_named(shared, tmp_path):
    (tmp_path / "gpt-4.jsonl").write_text("")
    with pytest.raises(InputError, match="no answers for model"):
        load(shared / "mt_bench" / "question.jsonl", tmp_path, shared / "mt_bench_human_judgments" / "human.jsonl",
             shared / "mt_bench_human_judgments" / "gpt4_pair.jsonl", None, 0)


def test_the_stage_script_writes_metrics_and_report(shared, tiny_reward_model, tmp_path):
    import yaml

    from tests.conftest import models_folder, repo_params, run_stage

    params = repo_params()
    params["train"]["variants"] = {"tiny": {"pairs": "unused.jsonl"}}
    params["mt_bench"].update(max_length=128, batch_size=32, bootstrap_resamples=100, sources={"shared": {
        "questions": str(shared / "mt_bench" / "question.jsonl"), "answers": str(shared / "mt_bench" / "model_answer"),
        "human": str(shared / "mt_bench_human_judgments" / "human.jsonl"),
        "gpt4": str(shared / "mt_bench_human_judgments" / "gpt4_pair.jsonl")}})
    models = models_folder(tmp_path, tiny_reward_model, ["tiny"])
    result = run_stage("mt_bench.py", "--source", "shared", "--models", str(models), "--out", str(tmp_path / "out"),
                       tmp_path=tmp_path, params=params)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = yaml.safe_load((tmp_path / "out" / "shared" / "metrics.json").read_text())
    assert metrics["reward_models"]["tiny"]["turn2"]["n"] == 1291
    assert metrics["baselines"]["longer_wins.turn2"]["accuracy"] == pytest.approx(0.696, abs=0.0005)
    assert "| RM tiny |" in (tmp_path / "out" / "shared" / "report.md").read_text() and "| RM tiny |" in result.stdout
    # the records hold every vote once per model; the reported agreement is recomputed from them
    from music_rm.evaluation.records import accuracy, read_records
    records = read_records(tmp_path / "out" / "shared" / "records.csv")
    for turn in (1, 2):
        suite = [r for r in records if r["suite"] == f"mt_bench/shared/turn{turn}"]
        by_model = {v: [r for r in suite if r["variant"] == v] for v in ("tiny", "gpt4", "longer_answer")}
        n = metrics["reward_models"]["tiny"][f"turn{turn}"]["n"]
        assert len(by_model["tiny"]) == len(by_model["longer_answer"]) == len({r["item"] for r in suite}) == n
        assert all(r["cluster"] == r["item"].split("/")[0][1:] for r in suite)  # q<question>/turn<t>/...
        for variant, reported in (("tiny", metrics["reward_models"]["tiny"][f"turn{turn}"]),
                                  ("gpt4", metrics["baselines"][f"gpt4.turn{turn}"]),
                                  ("longer_answer", metrics["baselines"][f"longer_wins.turn{turn}"])):
            rows = by_model[variant]
            again = accuracy([r["margin"] for r in rows], [r["cluster"] for r in rows], 100, 0)
            assert again == {**reported, "clusters": 80}, (variant, turn)
    assert {r["margin"] for r in records if r["variant"] == "gpt4"} == {-1.0, 0.0, 1.0}


def test_intervals_resample_questions_and_are_wider_than_over_votes(mt_bench, tiny_reward_model, report):
    """Votes of one question repeat one comparison (several experts) and share answers across model pairs: the
    interval that resamples whole questions is wider than one that treats the votes as independent."""
    from music_rm.evaluation.mt_bench import clusters, margins
    from music_rm.evaluation.records import accuracy

    votes, _, conversations = mt_bench
    rewards = score_conversations(load_reward_model(str(tiny_reward_model)), conversations, batch_size=16,
                                  max_length=64, desc="tiny")
    lines = []
    for turn in (1, 2):
        m = margins(rewards, votes, turn)
        by_vote, by_question = accuracy(m, None, 1000, 0), accuracy(m, clusters(votes, turn), 1000, 0)
        assert by_question["accuracy"] == by_vote["accuracy"] and by_question["clusters"] == 80
        width = {name: r["ci_high"] - r["ci_low"] for name, r in (("votes", by_vote), ("questions", by_question))}
        assert width["questions"] > 1.2 * width["votes"], width
        lines.append(f"turn {turn}: 95% width over votes {width['votes']:.3f}, over questions {width['questions']:.3f}")
    report("MT-Bench agreement interval, tiny random RM at max_length 64:\n" + "\n".join(lines))
