"""The LLM judge: verdict parsing, both answer orders, consistency, agreement, through real backends."""
import re

from music_rm.generation.generator import Generator
from music_rm.generation.transformers_backend import TransformersBackend
from music_rm.evaluation.judge import agreement, judge_pairs, parse_verdict
from music_rm.generation.openai_backend import OpenAIBackend
from music_rm.core.params import Sampling
from tests.openai_fixture import FixtureServer

GREEDY = Sampling(max_new_tokens=4, temperature=0.0, top_p=1.0)


def pair(i, good="Here is the poem you asked for.", bad="Here is a story instead."):
    opening = [{"role": "user", "content": f"Write poem number {i}."}]
    return {"id": f"p{i}", "chosen": opening + [{"role": "assistant", "content": good}],
            "rejected": opening + [{"role": "assistant", "content": bad}]}


def test_parse_verdict():
    answers = ("A", " b.", "Conversation B", "A is better", "Neither", "", "this is a test", "**B**")
    assert [parse_verdict(t) for t in answers] == ["A", "B", "B", "A", None, None, None, "B"]
    reasoned = ("Conversation A answers the first turn, but B follows the change of topic.\n"
                "A misses it.\n\nVerdict: B")
    assert parse_verdict(reasoned) == "B"  # the last verdict line, not the first letter of the reasoning
    assert parse_verdict("A looks fine.\nB drifts.") is None  # reasoning without a verdict line


def served_judge(monkeypatch, reply):
    monkeypatch.setenv("MUSIC_JUDGE_KEY", "k")
    server = FixtureServer(reply=reply)
    return server, lambda: Generator(OpenAIBackend(server.url, "judge", api_key_env="MUSIC_JUDGE_KEY",
                                                   concurrency=2, timeout_s=5, max_attempts=2, system_role=True,
                                                   backoff_s=0.01))


def content_judge(body):
    """Prefers the conversation whose assistant wrote the poem, wherever it is shown."""
    text = body["messages"][-1]["content"]
    a = re.search(r"\[Conversation A\](.*)\[Conversation B\]", text, re.S).group(1)
    return "A" if "poem you asked" in a else "B"


def test_a_content_judge_is_consistent_and_rms_are_scored_against_it(monkeypatch):
    pairs = [pair(i) for i in range(4)]
    server, generator = served_judge(monkeypatch, content_judge)
    with server:
        verdicts = judge_pairs(generator(), pairs, GREEDY, seed=0)
    assert len(server.requests) == 8 and [v["verdict"] for v in verdicts] == ["chosen"] * 4
    result = agreed(verdicts, {"right": [1.0, 2.0, 0.5, 0.1], "wrong": [-1.0, 1.0, -1.0, -1.0]})
    vs_judge = result["suites"]["judge"]["models"]
    assert result["inconsistency_rate"] == 0 and result["judge_vs_label"]["estimate"] == 1.0
    assert vs_judge["right"]["estimate"] == 1.0 and vs_judge["wrong"]["estimate"] == 0.25


def agreed(verdicts, margins):
    from music_rm.evaluation.judge import records

    pairs = [pair(int(v["id"][1:])) for v in verdicts]
    return agreement(verdicts, records(pairs, verdicts, margins, "s", 0), list(margins), [], 100, 0)


def test_records_orient_margins_by_the_label_and_a_reward_tie_counts_half():
    from music_rm.evaluation.estimates import accuracy, arms
    from music_rm.evaluation.judge import records
    from music_rm.evaluation.records import Record, outcome

    verdicts = [{"id": f"p{i}", "verdict": v} for i, v in
                enumerate(["chosen", "rejected", "inconsistent", "unparsed", "prompt_too_long", "chosen"])]
    margins = {"rm": [0.5, 0.5, -1.0, 2.0, 1.0, 0.0000004]}  # the last: a tie to 6 decimals
    rows = records([pair(i) for i in range(6)], verdicts, margins, "s", seed=2)
    result = agreement(verdicts, rows, ["rm"], [], 100, 0)
    vs_judge = result["suites"]["judge"]["models"]["rm"]
    assert (vs_judge["estimate"], vs_judge["n"], vs_judge["ties"]) == (0.5, 3, 1)
    assert result["suites"]["labels"]["models"]["rm"]["n"] == 6 and result["suites"]["labels"]["models"]["rm"]["ties"] == 1
    judge = {r.item: r.margin for r in rows if r.variant == "judge"}
    assert judge == {"p0": 1.0, "p1": -1.0, "p2": 0.0, "p3": 0.0, "p5": 1.0}  # no row where the prompt was too long
    rm = {r.item: r.margin for r in rows if r.variant == "rm" and r.seed == 2}
    assert len(rm) == 6 and {r.suite for r in rows} == {"judge/s"}
    assert {r.length for r in rows} == {len("Here is the poem you asked for.") - len("Here is a story instead.")}
    # rm vs judge from the records alone: outcome(rm margin × judge margin) where the judge decided
    again = [Record.of("x", i, "rm", 2, rm[i] * j) for i, j in sorted(judge.items()) if j != 0]
    assert accuracy(arms(again)["rm"], 100, 0).as_dict() == {**vs_judge, "length": None} and outcome(rm["p5"]) == 0.5


def test_a_position_biased_judge_counts_as_inconsistent(monkeypatch):
    server, generator = served_judge(monkeypatch, lambda body: "A")
    with server:
        verdicts = judge_pairs(generator(), [pair(i) for i in range(3)], GREEDY, seed=0)
    result = agreed(verdicts, {"rm": [1.0, 1.0, 1.0]})
    assert result["verdicts_inconsistent"] == 3 and result["inconsistency_rate"] == 1.0
    assert result["judge_vs_label"]["n"] == 0 and result["suites"]["judge"]["models"] == {}


def test_a_local_transformers_judge_runs(tiny_model):
    verdicts = judge_pairs(Generator(TransformersBackend(str(tiny_model), "float32", 4)), [pair(i) for i in range(3)],
                           GREEDY, seed=0)
    assert len(verdicts) == 3 and all(len(v["answers"]) == 2 for v in verdicts)
    assert {v["verdict"] for v in verdicts} <= {"chosen", "rejected", "inconsistent", "unparsed"}
