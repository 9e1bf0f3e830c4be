"""MT-Bench human judgments: do reward models agree with human experts on real two-turn conversations?

Votes: lmsys/mt_bench_human_judgments (Zheng et al. 2023), `human.jsonl` (experts and authors) and
`gpt4_pair.jsonl` (GPT-4 as judge), labels only. Conversations are rebuilt from the MT-Bench questions
and the published model answers (`model_answer/<model>.jsonl`). A turn-1 vote compares the first
exchange only; a turn-2 vote compares the whole conversation, as the judges saw it.

Agreement counts the human votes that are not ties. Beside each reward model, from the same votes: GPT-4's
agreement (where GPT-4 was not a tie either) and the "longer answer wins" baseline (the judged turn's answer,
in characters; votes with equal lengths left out). Length bias: agreement on the votes where the humans
preferred the shorter answer, and the rank correlation of reward with answer length.
"""
from pathlib import Path

from ..core.errors import InputError
from ..core.io import read_jsonl
from .stats import accuracy_summary, cell, markdown_table, paired_difference


def load(questions: str, answers: str, human: str, gpt4: str) -> tuple[list[dict], dict, dict]:
    """(human votes, GPT-4 verdicts by (question, model pair, turn), {(model, question): 4 messages})."""
    votes = [v for v in read_jsonl(human) if v["winner"] != "tie"]
    gpt4_verdicts = {}
    for v in read_jsonl(gpt4):
        winner = {"model_a": v["model_a"], "model_b": v["model_b"]}.get(v["winner"])  # tie, tie (inconsistent): None
        gpt4_verdicts[(v["question_id"], frozenset((v["model_a"], v["model_b"])), v["turn"])] = winner
    question_text = {q["question_id"]: q["turns"] for q in read_jsonl(questions)}
    models = sorted({m for v in votes for m in (v["model_a"], v["model_b"])})
    conversations = {}
    for model in models:
        path = Path(answers) / f"{model}.jsonl"
        if not path.is_file():
            raise InputError(path, None, None, f"no answers for model {model!r}, which the votes name")
        for row_no, row in enumerate(read_jsonl(path), start=1):
            qid = row["question_id"]
            if qid not in question_text:
                continue
            turns = row["choices"][0]["turns"]
            if len(turns) < 2:
                raise InputError(path, row_no, "choices[0].turns", "expected two answers")
            q = question_text[qid]
            conversations[(model, qid)] = [{"role": "user", "content": q[0]}, {"role": "assistant", "content": turns[0]},
                                           {"role": "user", "content": q[1]}, {"role": "assistant", "content": turns[1]}]
    missing = [(v["model_a"], v["question_id"]) for v in votes if (v["model_a"], v["question_id"]) not in conversations]
    if missing:
        raise InputError(answers, None, None, f"{len(missing)} votes have no answer to rebuild, e.g. {missing[0]}")
    return votes, gpt4_verdicts, conversations


def judged(conversation: list[dict], turn: int) -> list[dict]:
    return conversation[: 2 * turn]


def answer_length(conversation: list[dict], turn: int) -> int:
    return len(conversation[2 * turn - 1]["content"])


def baselines(votes, gpt4_verdicts, conversations, resamples: int, seed: int) -> dict:
    out = {}
    for turn in (1, 2):
        gpt4, longer = [], []
        for v in (v for v in votes if v["turn"] == turn):
            human_winner = v[v["winner"]]
            verdict = gpt4_verdicts.get((v["question_id"], frozenset((v["model_a"], v["model_b"])), turn))
            if verdict is not None:
                gpt4.append(float(verdict == human_winner))
            la = answer_length(conversations[(v["model_a"], v["question_id"])], turn)
            lb = answer_length(conversations[(v["model_b"], v["question_id"])], turn)
            if la != lb:
                longer.append(float((v["model_a"] if la > lb else v["model_b"]) == human_winner))
        out[f"gpt4.turn{turn}"] = accuracy_summary(gpt4, resamples, seed)
        out[f"longer_wins.turn{turn}"] = accuracy_summary(longer, resamples, seed)
    return out


def _spearman(x, y) -> float | None:
    from scipy.stats import spearmanr

    return None if len(x) < 3 else round(float(spearmanr(x, y).statistic), 6)


def hits(rewards: dict, votes, turn: int) -> list[float]:
    """1.0 where the reward model prefers the answer the human preferred, per non-tie vote of `turn`."""
    out = []
    for v in (v for v in votes if v["turn"] == turn):
        a, b, qid = v["model_a"], v["model_b"], v["question_id"]
        out.append(float((a if rewards[(a, qid, turn)] > rewards[(b, qid, turn)] else b) == v[v["winner"]]))
    return out


def differences(rewards: dict, votes, compare: list, resamples: int, seed: int) -> dict:
    """{"a-b": {turn1, turn2}}: paired-bootstrap difference of agreement between two variants, on the same votes."""
    return {f"{a}-{b}": {f"turn{t}": paired_difference(hits(rewards[a], votes, t), hits(rewards[b], votes, t),
                                                       resamples, seed) for t in (1, 2)}
            for a, b in compare if a in rewards and b in rewards}


def agreement(rewards: dict, votes, conversations, resamples: int, seed: int) -> dict:
    """rewards: {(model, question, turn): reward}. Agreement of the reward model with the human votes."""
    out = {}
    for turn in (1, 2):
        agree, shorter_preferred = hits(rewards, votes, turn), []
        for v, hit in zip((v for v in votes if v["turn"] == turn), agree):
            a, b, qid = v["model_a"], v["model_b"], v["question_id"]
            loser = b if v["winner"] == "model_a" else a
            if answer_length(conversations[(v[v["winner"]], qid)], turn) < answer_length(conversations[(loser, qid)], turn):
                shorter_preferred.append(hit)
        keys = [k for k in rewards if k[2] == turn]
        out[f"turn{turn}"] = accuracy_summary(agree, resamples, seed)
        out[f"turn{turn}_shorter_preferred"] = accuracy_summary(shorter_preferred, resamples, seed)
        out[f"turn{turn}_reward_length_spearman"] = _spearman(
            [rewards[k] for k in keys], [answer_length(conversations[(k[0], k[1])], turn) for k in keys])
    return out


def score_conversations(rm, conversations, batch_size: int, max_length: int | None, desc: str) -> dict:
    """{(model, question, turn): reward} for turn 1 (first exchange) and turn 2 (whole conversation)."""
    keys = [(m, q, turn) for (m, q) in sorted(conversations) for turn in (1, 2)]
    scores = rm.score([judged(conversations[(m, q)], turn) for m, q, turn in keys], batch_size, max_length, desc)
    return dict(zip(keys, scores))


def table(results: dict, base: dict) -> str:
    def c(r):
        return cell(r["accuracy"], r["ci_low"], r["ci_high"], r["n"])

    rows = []
    for variant, r in results.items():
        rho = r["turn2_reward_length_spearman"]
        rows.append([f"RM {variant}", c(r["turn1"]), c(r["turn2"]), c(r["turn2_shorter_preferred"]),
                     "n/a" if rho is None else f"{rho:.3f}"])
    rows.append(["GPT-4 (pairwise)", c(base["gpt4.turn1"]), c(base["gpt4.turn2"]), "", ""])
    rows.append(["longer answer wins", c(base["longer_wins.turn1"]), c(base["longer_wins.turn2"]), "", ""])
    return markdown_table(["judge", "turn 1 agreement", "turn 2 agreement",
                           "turn 2, humans preferred the shorter answer", "turn 2 reward-length Spearman"], rows)
