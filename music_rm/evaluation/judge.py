"""An LLM judge on multi-turn pairs, through the generation backends, asked in both answer orders.

Each pair is shown twice, (A = chosen, B = rejected) and swapped. A verdict counts only when both
orders name the same conversation; otherwise the pair is `inconsistent` (position bias), `unparsed`
when an answer names neither letter, or `prompt_too_long` when the judge prompt does not fit the judge
model's context. The prompt is `templates/judge.txt`.

Agreement (estimates.py, from the records): the judge with the pairs' labels, and each reward model with the judge,
on the consistent verdicts; a reward tie (equal rewards to 6 decimals) counts ½ (records.outcome), and each reward
model's agreement with the labels on every pair is reported beside it.

Records (records.py), suite `judge/<set>`, one row per pair and model, margins oriented by the pair's label: a reward
model's margin is reward(chosen) - reward(rejected); the judge's (variant `judge`, seed 0) is +1 for a verdict
`chosen`, -1 for `rejected`, 0 for `inconsistent` or `unparsed` (no row for `prompt_too_long`). A reward model
agrees with the judge on a pair where the judge's margin is not 0 by outcome(its margin × the judge's).
"""
import hashlib
import re
from importlib import resources

from ..data.conversation import length_difference, render
from ..generation.generator import TOO_LONG
from ..generation.request import Request, derive_seed
from .estimates import accuracy, arm_of, suite_result
from .records import LONGER_ANSWER, Record

TEMPLATE = resources.files("music_rm.evaluation") / "templates" / "judge.txt"
_LETTER = re.compile(r"\b([AB])\b")  # capitals only: a lowercase "a" is an article
_VERDICT = re.compile(r"verdict\W*([AB])\b", re.IGNORECASE)


def load_template() -> tuple[str, str]:
    text = TEMPLATE.read_text(encoding="utf-8").strip()
    if text.count("{a}") != 1 or text.count("{b}") != 1:
        raise ValueError(f"{TEMPLATE}: must contain {{a}} and {{b}} once each")
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def parse_verdict(text: str) -> str | None:
    """'A' or 'B': the last "Verdict: X" (a judge that reasons first), else the whole answer when it is one
    letter, else the first standalone capital A or B of a one-line answer; None when there is none."""
    verdicts = _VERDICT.findall(text)
    if verdicts:
        return verdicts[-1].upper()
    bare = text.strip().strip(".:)*\"'").strip()
    if bare.upper() in ("A", "B"):
        return bare.upper()
    match = _LETTER.search(text) if len(text.strip().splitlines()) <= 1 else None
    return match.group(1) if match else None


def judge_pairs(generator, pairs: list[dict], sampling, seed: int) -> list[dict]:
    """One verdict per pair: chosen | rejected | inconsistent | unparsed | prompt_too_long, with both raw answers."""
    template, _ = load_template()

    def request(a, b):
        content = template.replace("{a}", render(a)).replace("{b}", render(b))
        return Request(({"role": "user", "content": content},), sampling)

    requests = [r for p in pairs for r in (request(p["chosen"], p["rejected"]), request(p["rejected"], p["chosen"]))]
    answers = generator.generate(requests, seed=derive_seed(seed, "judge"), desc="judge")
    verdicts = []
    for i, pair in enumerate(pairs):
        first, second = answers[2 * i], answers[2 * i + 1]
        if first is None or second is None:
            verdicts.append({"id": pair["id"], "verdict": TOO_LONG, "answers": [first, second]})
            continue
        v1, v2 = parse_verdict(first), parse_verdict(second)
        if v1 is None or v2 is None:
            verdict = "unparsed"
        elif (v1, v2) == ("A", "B"):
            verdict = "chosen"
        elif (v1, v2) == ("B", "A"):
            verdict = "rejected"
        else:
            verdict = "inconsistent"
        verdicts.append({"id": pair["id"], "verdict": verdict, "answers": [first, second]})
    return verdicts


JUDGE_MARGIN = {"chosen": 1.0, "rejected": -1.0, "inconsistent": 0.0, "unparsed": 0.0}


def records(pairs: list[dict], verdicts: list[dict], margins: dict[str, list[float]], set_name: str,
            seed: int) -> list[Record]:
    """Each variant's margin per pair (its `seed`), the judge's (+1/0/-1) and the longer answer's (seed 0)."""
    suite = f"judge/{set_name}"
    lengths = [length_difference(p["chosen"], p["rejected"]) for p in pairs]
    rows = [Record.of(suite, v["id"], variant, seed, x, length=n) for variant, m in margins.items()
            for v, x, n in zip(verdicts, m, lengths)]
    rows += [Record.of(suite, v["id"], LONGER_ANSWER, 0, n, length=n) for v, n in zip(verdicts, lengths)]
    return rows + [Record.of(suite, v["id"], "judge", 0, JUDGE_MARGIN[v["verdict"]], length=n)
                   for v, n in zip(verdicts, lengths) if v["verdict"] in JUDGE_MARGIN]


def agreement(verdicts: list[dict], records: list[Record], variants, compare, resamples: int, seed: int) -> dict:
    """metrics.json: the verdict counts; the judge against the pairs' labels on its consistent verdicts; suite
    `labels`: every reward model against the labels on every pair; suite `judge`: every reward model against the
    judge on the consistent verdicts (a record's margin times the judge's)."""
    n = len(verdicts)
    counts = {k: sum(v["verdict"] == k for v in verdicts)
              for k in ("chosen", "rejected", "inconsistent", "unparsed", TOO_LONG)}
    judge = arm_of(records, "judge")
    consistent = dict(zip((i for i, m in zip(judge.items, judge.margins[0]) if m != 0),
                          (m for m in judge.margins[0] if m != 0)))
    vs_judge = [Record.of("judge", r.item, r.variant, r.seed, r.margin * consistent[r.item],
                          length=None if r.length is None else r.length * consistent[r.item])
                for r in records if r.variant != "judge" and r.item in consistent]
    return {"pairs": n, **{f"verdicts_{k}": c for k, c in counts.items()},
            "inconsistency_rate": round(counts["inconsistent"] / n, 6) if n else None,
            "judge_vs_label": accuracy(judge.only(consistent), resamples, seed).as_dict(),
            "suites": {"labels": suite_result([r for r in records if r.variant != "judge"], compare, resamples, seed,
                                              order=[*variants, LONGER_ANSWER]).as_dict(),
                       "judge": suite_result(vs_judge, compare, resamples, seed, order=variants).as_dict()}}


def headline(metrics: dict) -> dict[str, float]:
    """The numbers a pipeline run carries from this suite (tracking.carry)."""
    out = {"inconsistency_rate": metrics["inconsistency_rate"], "judge_vs_label": metrics["judge_vs_label"]["estimate"]}
    return {k: v for k, v in out.items() if v is not None}
