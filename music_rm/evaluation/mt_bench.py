"""MT-Bench human judgments: do reward models agree with human experts on real two-turn conversations?

Votes: lmsys/mt_bench_human_judgments (Zheng et al. 2023), `human.jsonl` (experts and authors) and
`gpt4_pair.jsonl` (GPT-4 as judge), labels only. Conversations are rebuilt from the MT-Bench questions
and the published model answers (`model_answer/<model>.jsonl`). A turn-1 vote compares the first
exchange only; a turn-2 vote compares the whole conversation, as the judges saw it.

Agreement counts the human votes that are not ties: the share where the reward model gives the answer the human
preferred the higher reward, a reward tie (equal to 6 decimals) counting ½ (records.outcome). Beside each reward
model, on the same votes: GPT-4's agreement (on the votes GPT-4 judged; its tie counts ½) and "the longer answer
wins" (the judged turn's answer, in characters; equal lengths count ½). Length bias: agreement on the votes where
the humans preferred the shorter answer, and the rank correlation of reward with answer length.

Intervals resample questions, not votes: the 1,284 turn-1 votes cover 80 questions, several experts judged the
same comparison, and one answer of a question takes part in several model pairs, so the votes of one question
are not independent (a reward model gives the same verdict on every repeat of a comparison). Each bootstrap
resample draws the questions with replacement and keeps every vote of a drawn question (stats.seeded_bootstrap
with the question as cluster); the model pair is not a cluster of its own: pairs of one question share answers,
and resampling whole questions covers the repeats within a pair too.

Every number is computed from the records by estimates.py. Records (records.py), suite `mt_bench/<source>/turn<t>`, one row per vote and model: item
`q<question>/turn<t>/<model_a>-vs-<model_b>/<judge>` (the vote in human.jsonl), cluster the question id, margin
the reward of the answer the human preferred minus the other's; `gpt4`: +1 / 0 / -1 where GPT-4 agreed / tied /
disagreed; `longer_answer`: the characters of the preferred answer minus the other's.
"""
import random
from pathlib import Path

from ..core.errors import InputError
from ..core.io import read_jsonl
from .estimates import accuracy, arms, by_suite, suite_result
from .records import LONGER_ANSWER, Record
from .report import cell, markdown_table

TURNS = (1, 2)


def load(questions: str, answers: str, human: str, gpt4: str, limit: int | None,
         seed: int) -> tuple[list[dict], dict, dict]:
    """(human votes, GPT-4 verdicts by (question, model pair, turn), {(model, question): 4 messages}); with a
    `limit`, of that many questions drawn at random with `seed` (among those with votes)."""
    votes = [v for v in read_jsonl(human) if v["winner"] != "tie"]
    if limit is not None:
        drawn = set(random.Random(seed).sample(sorted({v["question_id"] for v in votes}),
                                               min(limit, len({v["question_id"] for v in votes}))))
        votes = [v for v in votes if v["question_id"] in drawn]
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
            if qid not in question_text or (limit is not None and qid not in drawn):
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


def vote_id(v: dict) -> str:
    """A vote's id in the records, naming it in human.jsonl: question, turn, model pair (as the file orders it) and
    the human judge."""
    return f"q{v['question_id']}/turn{v['turn']}/{v['model_a']}-vs-{v['model_b']}/{v['judge']}"


def turn_votes(votes, turn: int) -> list[dict]:
    return [v for v in votes if v["turn"] == turn]


def clusters(votes, turn: int) -> list[str]:
    """The question of each vote of `turn`: the unit the intervals resample (as text, as the records store it, so
    that an interval recomputed from the records draws the same questions)."""
    return [str(v["question_id"]) for v in turn_votes(votes, turn)]


def _winner_loser(v: dict) -> tuple[str, str]:
    return (v["model_a"], v["model_b"]) if v["winner"] == "model_a" else (v["model_b"], v["model_a"])


def margins(rewards: dict, votes, turn: int) -> list[float]:
    """Per non-tie vote of `turn`: reward of the answer the human preferred minus the other's."""
    out = []
    for v in turn_votes(votes, turn):
        winner, loser = _winner_loser(v)
        out.append(rewards[(winner, v["question_id"], turn)] - rewards[(loser, v["question_id"], turn)])
    return out


def gpt4_margins(votes, gpt4_verdicts, turn: int) -> dict[str, float]:
    """{vote id: +1 where GPT-4 preferred the answer the human preferred, -1 the other, 0 for its tie}, over the
    votes of `turn` GPT-4 judged."""
    out = {}
    for v in turn_votes(votes, turn):
        key = (v["question_id"], frozenset((v["model_a"], v["model_b"])), turn)
        if key in gpt4_verdicts:
            verdict = gpt4_verdicts[key]
            out[vote_id(v)] = 0.0 if verdict is None else 1.0 if verdict == v[v["winner"]] else -1.0
    return out


def length_margins(votes, conversations, turn: int) -> list[float]:
    """Per vote of `turn`: characters of the judged turn's answer the human preferred minus the other's."""
    out = []
    for v in turn_votes(votes, turn):
        winner, loser = _winner_loser(v)
        out.append(float(answer_length(conversations[(winner, v["question_id"])], turn)
                         - answer_length(conversations[(loser, v["question_id"])], turn)))
    return out


def records(rewards: dict, votes, gpt4_verdicts, conversations, source: str, seed: int) -> list[Record]:
    """Records of every vote: each variant's margin (its `seed`), GPT-4's (+1/0/-1) and the longer answer's
    (characters), seed 0 for both; suite `mt_bench/<source>/turn<t>`, cluster the question."""
    rows = []
    for turn in TURNS:
        suite, tv = f"mt_bench/{source}/turn{turn}", turn_votes(votes, turn)
        ids, questions = [vote_id(v) for v in tv], clusters(votes, turn)
        lengths = length_margins(votes, conversations, turn)
        per_model = [(variant, seed, margins(r, votes, turn)) for variant, r in rewards.items()]
        per_model.append((LONGER_ANSWER, 0, lengths))
        for variant, s, ms in per_model:
            rows += [Record.of(suite, i, variant, s, m, q, n) for i, q, m, n in zip(ids, questions, ms, lengths)]
        gpt4 = gpt4_margins(votes, gpt4_verdicts, turn)
        rows += [Record.of(suite, i, "gpt4", 0, gpt4[i], q, n) for i, q, n in zip(ids, questions, lengths) if i in gpt4]
    return rows


def _spearman(x, y) -> float | None:
    from scipy.stats import spearmanr

    return None if len(x) < 3 else round(float(spearmanr(x, y).statistic), 6)


def results(records: list[Record], rewards: dict, conversations, compare: list, resamples: int, seed: int) -> dict:
    """metrics.json: per turn, every model's agreement with the human votes and the differences (estimates.py,
    questions resampled); each variant's agreement on the votes where the humans preferred the shorter answer
    (the longer answer's margin below 0), and the rank correlation of its rewards with answer length."""
    suites = {suite.rsplit("/", 1)[1]: rows for suite, rows in by_suite(records).items()}
    out = {"suites": {}, "shorter_preferred": {}, "reward_length_spearman": {}}
    for turn_name, rows in suites.items():
        turn = int(turn_name[len("turn"):])
        out["suites"][turn_name] = suite_result(rows, compare, resamples, seed,
                                                order=[*rewards, "gpt4", LONGER_ANSWER]).as_dict()
        by_variant = arms(rows)
        shorter = [i for i, m in zip(by_variant[LONGER_ANSWER].items, by_variant[LONGER_ANSWER].margins[0]) if m < 0]
        out["shorter_preferred"][turn_name] = {v: accuracy(by_variant[v].only(shorter), resamples, seed).as_dict()
                                               for v in rewards}
        out["reward_length_spearman"][turn_name] = {v: _spearman(
            [r[k] for k in r if k[2] == turn], [answer_length(conversations[(k[0], k[1])], turn) for k in r if k[2] == turn])
            for v, r in rewards.items()}
    return out


def headline(metrics: dict) -> dict[str, float]:
    """The numbers a pipeline run carries from this suite (tracking.carry): every model's agreement per turn."""
    return {f"{turn}.{v}.accuracy": r["estimate"] for turn, s in metrics["suites"].items()
            for v, r in s["models"].items() if r["estimate"] is not None}


def score_conversations(rm, conversations, batch_size: int, max_length: int | None, desc: str) -> dict:
    """{(model, question, turn): reward} for turn 1 (first exchange) and turn 2 (whole conversation)."""
    keys = [(m, q, turn) for (m, q) in sorted(conversations) for turn in TURNS]
    scores = rm.score([judged(conversations[(m, q)], turn) for m, q, turn in keys], batch_size, max_length, desc)
    return dict(zip(keys, scores))


def table(metrics: dict, variants) -> str:
    def c(r):
        return cell(r["estimate"], r["ci_low"], r["ci_high"], f"{r['n']}, {r['ties']} ties")

    suites = metrics["suites"]
    rows = []
    for variant in variants:
        rho = metrics["reward_length_spearman"]["turn2"][variant]
        rows.append([f"RM {variant}", c(suites["turn1"]["models"][variant]), c(suites["turn2"]["models"][variant]),
                     c(metrics["shorter_preferred"]["turn2"][variant]), "n/a" if rho is None else f"{rho:.3f}"])
    for name, label in (("gpt4", "GPT-4 (pairwise)"), (LONGER_ANSWER, "longer answer wins")):
        rows.append([label, c(suites["turn1"]["models"][name]), c(suites["turn2"]["models"][name]), "", ""])
    return markdown_table(["judge", "turn 1 agreement", "turn 2 agreement",
                           "turn 2, humans preferred the shorter answer", "turn 2 reward-length Spearman"], rows)
