"""The MT-Bench human-agreement suite on the real files in ../shared/data, with a tiny random reward model."""
import pytest

from music_rm.core.errors import InputError
from music_rm.evaluation.mt_bench import load, records, results, score_conversations, table
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


def test_the_references_match_the_published_length_baseline(mt_bench):
    votes, gpt4, conversations = mt_bench
    metrics = results(records({}, votes, gpt4, conversations, "shared", 0), {}, conversations, [], 200, 0)
    models = {turn: metrics["suites"][turn]["models"] for turn in ("turn1", "turn2")}
    assert models["turn2"]["longer_answer"]["estimate"] == pytest.approx(0.696, abs=0.0005)  # 69.6% in the issue
    assert 0.6 < models["turn1"]["gpt4"]["estimate"] < 0.9 and 0.6 < models["turn2"]["gpt4"]["estimate"] < 0.9


def test_reward_model_agreement_table(mt_bench, tiny_reward_model, report):
    votes, gpt4, conversations = mt_bench
    rewards = {"tiny-random": score_conversations(load_reward_model(str(tiny_reward_model)), conversations,
                                                  batch_size=16, max_length=256, desc="tiny")}
    metrics = results(records(rewards, votes, gpt4, conversations, "shared", 0), rewards, conversations, [], 200, 0)
    for turn in (1, 2):
        r = metrics["suites"][f"turn{turn}"]["models"]["tiny-random"]
        assert r["n"] == sum(v["turn"] == turn for v in votes) and r["ci_low"] <= r["estimate"] <= r["ci_high"]
        assert r["clusters"] == 80
        assert 0 < metrics["shorter_preferred"][f"turn{turn}"]["tiny-random"]["n"] < r["n"]
        assert -1 <= metrics["reward_length_spearman"][f"turn{turn}"]["tiny-random"] <= 1
    text = table(metrics, ["tiny-random"])
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
    assert metrics["suites"]["turn2"]["models"]["tiny"]["n"] == 1291
    assert metrics["suites"]["turn2"]["models"]["longer_answer"]["estimate"] == pytest.approx(0.696, abs=0.0005)
    assert "| RM tiny |" in (tmp_path / "out" / "shared" / "report.md").read_text() and "| RM tiny |" in result.stdout
    # the records hold every vote once per model; every reported number is recomputed from them
    from music_rm.evaluation.estimates import by_suite, suite_result
    from music_rm.evaluation.records import read_records
    rows = read_records(tmp_path / "out" / "shared" / "records.csv")
    for turn in (1, 2):
        suite = by_suite(rows)[f"mt_bench/shared/turn{turn}"]
        n = metrics["suites"][f"turn{turn}"]["models"]["tiny"]["n"]
        assert sum(r.variant == "tiny" for r in suite) == sum(r.variant == "longer_answer" for r in suite) == n
        assert len({r.item for r in suite}) == n
        assert all(r.cluster == r.item.split("/")[0][1:] for r in suite)  # q<question>/turn<t>/...
        again = suite_result(suite, [], 100, 0, order=["tiny", "gpt4", "longer_answer"]).as_dict()
        assert again == metrics["suites"][f"turn{turn}"], turn
    assert {r.margin for r in rows if r.variant == "gpt4"} == {-1.0, 0.0, 1.0}


def test_intervals_resample_questions_and_are_wider_than_over_votes(mt_bench, tiny_reward_model, report):
    """Votes of one question repeat one comparison (several experts) and share answers across model pairs: the
    interval that resamples whole questions is wider than one that treats the votes as independent."""
    from music_rm.evaluation.estimates import accuracy, arms

    votes, gpt4, conversations = mt_bench
    rewards = {"tiny": score_conversations(load_reward_model(str(tiny_reward_model)), conversations, batch_size=16,
                                           max_length=64, desc="tiny")}
    rows = records(rewards, votes, gpt4, conversations, "shared", 0)
    lines = []
    for turn in (1, 2):
        by_question = arms([r for r in rows if r.suite.endswith(f"turn{turn}")])["tiny"]
        by_vote = type(by_question)("tiny", by_question.seeds, by_question.items, by_question.items, by_question.margins)
        by_vote, by_question = accuracy(by_vote, 1000, 0), accuracy(by_question, 1000, 0)
        assert by_question.estimate == by_vote.estimate and by_question.clusters == 80
        width = {name: r.ci_high - r.ci_low for name, r in (("votes", by_vote), ("questions", by_question))}
        assert width["questions"] > 1.2 * width["votes"], width
        lines.append(f"turn {turn}: 95% width over votes {width['votes']:.3f}, over questions {width['questions']:.3f}")
    report("MT-Bench agreement interval, tiny random RM at max_length 64:\n" + "\n".join(lines))
