"""Multi-turn Best-of-N: candidate picking, rollouts through real backends, judged win rates, the stage script."""
import json
import re

import pytest

from music_rm.evaluation.best_of_n import comparisons, judge_rollouts, pick, records, roll_out, table, win_rates
from music_rm.generation.cache import GenerationCache
from music_rm.generation.generator import Generator
from music_rm.generation.openai_backend import OpenAIBackend
from music_rm.core.errors import ParamsError
from music_rm.core.params import Sampling, validate
from music_rm.method.simulate import TreeBuilder
from tests.conftest import REPO, models_folder, params_section, repo_params, run_stage
from tests.openai_fixture import FixtureServer

PROMPTS = [(f"p{i}", [{"role": "user", "content": f"Tell me about topic {i}."}]) for i in range(3)]


JUDGE = Sampling(max_new_tokens=4, temperature=0.0, top_p=1.0)


def params(**overrides):
    return (params_section("best_of_n", **{"turns": 2, "n": [2, 4], "bootstrap_resamples": 100, **overrides}),
            params_section("simulate"))


def test_pick_takes_the_best_rewarded_usable_candidate_and_the_first_on_a_tie():
    assert pick([0.1, 0.9, 0.5], ["a b", "c d", "e f"]) == 1
    assert pick([0.9, 0.9, 0.1], ["a b", "c d", "e f"]) == 0
    assert pick([0.9, 0.9000004, 0.1], ["a b", "c d", "e f"]) == 0  # equal to 6 decimals: a tie, the first wins
    assert pick([0.1, 0.9], ["a b", " "]) == 0  # an empty answer is never picked
    assert pick([0.1], [""]) is None


def number(text):
    return int(re.search(r"Answer (\d+)", text).group(1))


def policy_reply(body):
    """Assistant requests: a number drawn from the request's seed (0 when greedy). User simulator: a question."""
    last = body["messages"][-1]["content"]
    if last.rstrip().endswith("Next user message:"):
        return f"What else about item {body['seed'] % 97}?"
    return "Answer 0" if body["temperature"] == 0 else f"Answer {body['seed'] + 1}"


def sum_judge(body):
    """Prefers the conversation whose assistant numbers add up to more, wherever it is shown."""
    text = body["messages"][-1]["content"]
    a, b = re.search(r"\[Conversation A\](.*)\[Conversation B\](.*)Which", text, re.S).groups()
    total = lambda part: sum(int(x) for x in re.findall(r"Assistant: Answer (\d+)", part))
    return "A" if total(a) > total(b) else "B"


def served(server):
    return Generator(OpenAIBackend(server.url, "m", api_key_env=None, concurrency=4, timeout_s=5, max_attempts=2,
                                   system_role=True, backoff_s=0.01),
                     GenerationCache(server.cache_path))


def test_rollouts_pick_the_reward_models_favourite_and_the_judge_sees_both_orders(tmp_path):
    p, sim = params()
    reward_fns = {"baseline": lambda convs: [float(number(c[-1]["content"])) for c in convs],
                  "music": lambda convs: [-float(number(c[-1]["content"])) for c in convs]}  # prefers small numbers
    policy_server, judge_server = FixtureServer(reply=policy_reply), FixtureServer(reply=sum_judge)
    policy_server.cache_path = judge_server.cache_path = tmp_path / "cache.sqlite"
    with policy_server, judge_server:
        policy = served(policy_server)
        rollouts = roll_out(policy, TreeBuilder(policy, sim), reward_fns, PROMPTS, p, user_retries=1)
        verdicts = judge_rollouts(served(judge_server), rollouts, p, JUDGE, judge_seed=0)
    # greedy + two variants and the two length pickers × (N=2 + N=4) candidates
    per_prompt_turn = 1 + 4 * (2 + 4)
    assistant_calls = [r for r in policy_server.requests if not r["messages"][-1]["content"].endswith("message:")]
    assert len(assistant_calls) == len(PROMPTS) * p.turns * per_prompt_turn
    assert len(rollouts) == len(PROMPTS) * 9 and not any(r.failed for r in rollouts)
    for r in rollouts:
        answers = [m["content"] for m in r.messages if m["role"] == "assistant"]
        assert len(answers) == p.turns and [m["role"] for m in r.messages] == ["user", "assistant"] * p.turns
        if r.variant is None:
            assert answers == ["Answer 0"] * p.turns
            continue
        if r.variant not in reward_fns:  # a length picker: the longest or shortest candidate
            sign = {"longest_answer": 1, "shortest_answer": -1}[r.variant]
            assert all(p["rewards"][p["index"]] == max(p["rewards"]) and p["rewards"][p["index"]] == sign * len(a)
                       for a, p in zip(answers, r.picked))
            continue
        for turn, picked in zip(answers, r.picked):
            rewards = picked["rewards"]
            assert len(rewards) == r.n and len(set(rewards)) == r.n  # N distinct draws, not one answer N times
            best = max(rewards)
            assert picked["rewards"][picked["index"]] == best and reward_fns[r.variant]([[{"content": turn}]])[0] == best
    assert len(verdicts) == len(PROMPTS) * len(comparisons(p)) and len(judge_server.requests) == 2 * len(verdicts)
    by_policy = {(r.prompt_id, r.name): r for r in rollouts}
    total = lambda r: sum(number(m["content"]) for m in r.messages if m["role"] == "assistant")
    for v in verdicts:
        name, n = v["comparison"].rsplit("@", 1)
        a, b = name.split("_vs_")
        a_total = total(by_policy[(v["prompt_id"], f"{a}@{n}")])
        b_total = total(by_policy[(v["prompt_id"], "greedy" if b == "greedy" else f"{b}@{n}")])
        assert v["verdict"] == ("win" if a_total > b_total else "loss")
    rates = win_rates(records(verdicts, p, "s", 0), p)
    assert rates["baseline_vs_greedy@4"]["estimate"] == 1.0 and rates["baseline_vs_greedy@4"]["wins"] == len(PROMPTS)
    # The draws depend on the server's port (it is part of the backend's identity, hence of the seeds), so the
    # music-vs-baseline outcome is computed from the rollouts: smallest-number picks against largest.
    music_wins = sum(total(by_policy[(pid, "music@4")]) > total(by_policy[(pid, "baseline@4")]) for pid, _ in PROMPTS)
    assert rates["music_vs_baseline@4"]["wins"] == music_wins == len(PROMPTS) - rates["music_vs_baseline@4"]["losses"]
    assert rates["music_vs_baseline@4"]["estimate"] == pytest.approx(music_wins / len(PROMPTS))
    cell = f"({music_wins}/0/{len(PROMPTS) - music_wins}) |"
    assert next(line for line in table(rates, p).splitlines() if line.startswith("| music vs baseline |")).endswith(cell)


def test_rollouts_are_reproducible_and_a_rerun_comes_from_the_cache(tmp_path):
    p, sim = params(n=[2])
    reward_fns = {v: (lambda convs: [float(number(c[-1]["content"])) for c in convs]) for v in ("baseline", "music")}
    server = FixtureServer(reply=policy_reply)
    server.cache_path = tmp_path / "cache.sqlite"
    with server:
        first = roll_out(served(server), TreeBuilder(None, sim), reward_fns, PROMPTS[:2], p, user_retries=0)
        calls = len(server.requests)
        again = served(server)
        second = roll_out(again, TreeBuilder(None, sim), reward_fns, PROMPTS[:2], p, user_retries=0)
    assert [r.messages for r in first] == [r.messages for r in second]
    assert len(server.requests) == calls and again.model_calls == 0


def test_a_judge_that_cannot_decide_gives_ties(tmp_path):
    p, sim = params(n=[2])
    reward_fns = {v: (lambda convs: [float(number(c[-1]["content"])) for c in convs]) for v in ("baseline", "music")}
    policy_server, judge_server = FixtureServer(reply=policy_reply), FixtureServer(reply=lambda body: "A")
    policy_server.cache_path = judge_server.cache_path = tmp_path / "cache.sqlite"
    with policy_server, judge_server:
        rollouts = roll_out(served(policy_server), TreeBuilder(None, sim), reward_fns, PROMPTS, p, user_retries=0)
        verdicts = judge_rollouts(served(judge_server), rollouts, p, JUDGE, judge_seed=0)
    rows = records(verdicts, p, "s", seed=3)
    rates = win_rates(rows, p)
    assert all(r["estimate"] == 0.5 and r["ties"] == len(PROMPTS) for r in rates.values())
    # the records: one row per prompt and comparison, the tie as margin 0, which the one tie rule counts ½
    from music_rm.evaluation.estimates import accuracy, arms
    assert {r.suite for r in rows} == {"best_of_n/s/vs_greedy@2", "best_of_n/s/vs_baseline@2"}
    assert len(rows) == len(verdicts) and {(r.margin, r.seed) for r in rows if r.variant in p.variants} == {(0.0, 3)}
    assert {r.seed for r in rows if r.variant in ("longest_answer", "shortest_answer")} == {0}  # references: seed 0
    music = arms([r for r in rows if r.suite.endswith("vs_baseline@2")])["music"]
    assert accuracy(music, p.bootstrap_resamples, p.seed).estimate == rates["music_vs_baseline@2"]["estimate"]


def test_a_rollout_whose_user_simulator_keeps_failing_is_left_out_of_the_judging(tmp_path):
    p, sim = params(n=[2])
    reward_fns = {v: (lambda convs: [float(number(c[-1]["content"])) for c in convs]) for v in ("baseline", "music")}

    def reply(body):
        if "topic 0" in json.dumps(body) and body["messages"][-1]["content"].endswith("message:"):
            return "Assistant: I will answer instead."  # the user simulator breaks role for prompt p0
        return policy_reply(body)

    server = FixtureServer(reply=reply)
    server.cache_path = tmp_path / "cache.sqlite"
    with server:
        rollouts = roll_out(served(server), TreeBuilder(None, sim), reward_fns, PROMPTS, p, user_retries=1)
    failed = {(r.prompt_id, r.failed) for r in rollouts if r.failed}
    assert failed == {("p0", "user_role_break")}
    judged = judge_rollouts(Generator(_Fixed("A")), rollouts, p, JUDGE, judge_seed=0)
    assert {v["prompt_id"] for v in judged} == {"p1", "p2"}


class _Fixed:
    """A backend that always answers the same text: enough for a judge whose verdicts are not the point."""

    identity = {"backend": "fixed"}

    def __init__(self, text):
        self.text = text

    def plan(self, requests):
        return [[i] for i in range(len(requests))]

    def run_many(self, jobs):
        for j, (requests, _) in enumerate(jobs):
            yield j, ([self.text] * len(requests), 0)


def test_the_stage_script_writes_every_output_byte_identically(tiny_model, tiny_reward_model, tmp_path):
    """Policy and user simulator served over HTTP (tiny random models rarely finish a turn), the tiny model as
    the local judge, tiny reward models picking."""
    raw = repo_params(judge={"cache": False}, best_of_n={
        "prompt_sets": {"seeds": {"path": str(REPO / "music_rm/data/seeds/embedded.jsonl"), "format": "schema",
                                  "limit": 2}},
        "turns": 2, "n": [2, 3], "bootstrap_resamples": 50})
    raw["train"]["variants"] = {"baseline": {"pairs": "x"}, "music": {"pairs": "x"}}
    models = models_folder(tmp_path, tiny_reward_model, ["baseline", "music"])
    args = ["--set", "seeds", "--model", str(tiny_model), "--models", str(models), "--out", str(tmp_path / "out")]
    with FixtureServer() as server:
        raw["simulate"].update(backend="openai", cache=False)
        raw["simulate"]["openai"].update(base_url=server.url, model="m", api_key_env=None, max_attempts=2)
        result = run_stage("best_of_n.py", *args, tmp_path=tmp_path, params=raw)
        assert result.returncode == 0, result.stderr[-3000:]
        out = tmp_path / "out" / "seeds"
        first = [(out / name).read_bytes() for name in ("rollouts.jsonl", "verdicts.jsonl", "records.csv", "metrics.json",
                                                          "heatmap.png")]
        assert run_stage("best_of_n.py", *args, tmp_path=tmp_path, params=raw).returncode == 0
    assert [(out / name).read_bytes() for name in ("rollouts.jsonl", "verdicts.jsonl", "records.csv", "metrics.json",
                                                   "heatmap.png")] == first  # same params and seed: byte-identical
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["prompts"] == metrics["prompts_judged"] == 2 and metrics["rollouts_failed"] == 0
    assert set(metrics["win_rates"]) == {f"{c}@{n}" for n in (2, 3) for c in (
        "baseline_vs_greedy", "music_vs_greedy", "longest_answer_vs_greedy", "shortest_answer_vs_greedy",
        "music_vs_baseline")}
    assert all(r["n"] == 2 == r["wins"] + r["ties"] + r["losses"] for r in metrics["win_rates"].values())
    rollouts = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert sorted({r["policy"] for r in rollouts}) == ["baseline@2", "baseline@3", "greedy", "longest_answer@2",
                                                       "longest_answer@3", "music@2", "music@3", "shortest_answer@2",
                                                       "shortest_answer@3"]
    assert all(len(turn["rewards"]) == int(r["policy"][-1]) for r in rollouts if r["policy"] != "greedy"
               for turn in r["picked"])
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| music vs baseline |" in (out / "report.md").read_text() and "| music vs baseline |" in result.stdout


def test_variants_must_be_trained_and_the_policy_must_sample(tmp_path):
    raw = repo_params(best_of_n={"policy": {"temperature": 0}})
    with pytest.raises(ParamsError, match="best_of_n.policy.temperature: must be > 0"):
        validate(raw, "params.yaml")
    raw = repo_params(best_of_n={"variants": ["baseline", "nope"],
                                 "prompt_sets": {"s": {"path": "x", "format": "auto", "limit": 1}}})
    result = run_stage("best_of_n.py", "--set", "s", tmp_path=tmp_path, params=raw)
    assert result.returncode == 1 and "best_of_n.variants: ['nope'] are not in train.variants" in result.stderr
    assert "Traceback" not in result.stderr
