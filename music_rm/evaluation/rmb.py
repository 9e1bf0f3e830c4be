"""RMB (Zhou et al. 2025, arXiv 2410.09893): helpfulness and harmlessness over 49 scenarios, pairwise and Best-of-N,
with multi-turn conversation contexts.

Read upstream: Zhou-Zoey/RMB-Reward-Model-Benchmark at 2be3180857f2190b7ffa929d43190835627f1f4d: the data
(`RMB_dataset/Pairwise_set/<goal>/…/<scenario>.json` and `RMB_dataset/BoN_set/…`, JSON lists; a pairwise row:
pair_uid, conversation_input (messages with role, content, language), chosen and reject ({llm_name, answer}),
category_path; a Best-of-N row: bon_uid, conversation_input, bon_best ({llm_name, answer}), loser_list (2 to 5 of
them), category_path) and `eval/scripts/my_run_rm.py` (the context is conversation_input's turns; a pair is right when
the chosen answer's reward is strictly higher; the accuracy of a run is the mean over every pair of the files it
reads). Upstream has no Best-of-N scorer; the paper's rule is used: a Best-of-N row is right when bon_best's reward is
strictly higher than every loser's. RMB is not on the Hub from its authors: a source is a local copy of RMB_dataset
(or a folder in it), or a dataset `datasets` loads whose rows have the same fields.

Rows: one of the two shapes above (told apart by pair_uid or bon_uid), the context a conversation that ends with a
user message (kept whole, every turn; `language` dropped), category_path `Pairwise_set/<goal>/…` or `BoN_set/<goal>/…`
with the goal Helpfulness or Harmlessness; a bad row is one error line naming file, row and field
(reward_bench.on_invalid: skip counts it instead).

Scores, as upstream computes them (strictly higher; an equal reward counts 0), for each model and the length
references: pairwise accuracy and Best-of-N accuracy per goal, over every row of the goal (and per scenario, its
category_path, without interval), and the RMB score, the mean of the four (the paper's four columns), given when all
four are there. Intervals: a bootstrap that draws each (set, goal)'s rows with replacement; differences between two
models: the same resamples for both.

Records (candidates.py): suite `rmb/<source>/pairwise/<goal>`, one per pair and model, item `<pair_uid>#0>1`, margin
reward(chosen) − reward(reject), with `longer_answer`; suite `rmb/<source>/bon/<goal>`, one per Best-of-N row, item
its bon_uid, margin bon_best's reward minus the best loser's, length bon_best's characters minus the longest loser's,
with `longest_answer` and `shortest_answer`; suite `…/bon/<goal>/pairs`, one per (bon_best, loser).
"""
from collections import Counter

import numpy as np

from ..core.errors import InputError
from . import candidates
from .candidates import (Item, checked_answers, checked_context, choice_records, length_rewards, load_dataset,
                         load_files, mean_of, pair_records, skipped_line, subset_groups, text_field,
                         upstream_scores, upstream_table)

SETS = {"pair_uid": "Pairwise_set", "bon_uid": "BoN_set"}
KIND = {"Pairwise_set": "pairwise", "BoN_set": "bon"}
GOALS = ("Helpfulness", "Harmlessness")
SCORES = tuple(f"{goal}.{kind}" for goal in GOALS for kind in ("bon", "pairwise"))
PUBLISHED = 0.864  # Skywork-Reward-V2-Llama-3.1-8B's RMB score, arXiv 2507.01352


def kind_and_goal(item: Item) -> tuple[str, str]:
    """("pairwise" or "bon", the goal) of an item, from its category_path."""
    parts = item.subset.split("/")
    return KIND[parts[0]], parts[1]


def _answer(raw: dict, name: str, where) -> str:
    value = raw.get(name)
    if not isinstance(value, dict):
        raise InputError(*where, name, "missing" if name not in raw else
                         f"expected an object with an answer, got {type(value).__name__}")
    if "answer" not in value:
        raise InputError(*where, f"{name}.answer", "missing")
    return value["answer"]


def parse(raw: dict, where) -> list[Item]:
    uid_field = next((f for f in SETS if f in raw), None)
    if uid_field is None:
        raise InputError(*where, "pair_uid", "missing (a pairwise row has pair_uid, a Best-of-N row bon_uid)")
    uid = raw[uid_field]
    if isinstance(uid, bool) or not isinstance(uid, (str, int)):
        raise InputError(*where, uid_field, f"expected a string or an integer, got {type(uid).__name__}")
    path = text_field(raw, "category_path", where)
    parts = path.split("/")
    if parts[0] != SETS[uid_field] or len(parts) < 3 or parts[1] not in GOALS:
        raise InputError(*where, "category_path", f"expected {SETS[uid_field]}/<{' or '.join(GOALS)}>/…, got {path!r}")
    turns = raw.get("conversation_input")
    if isinstance(turns, list):
        turns = [{k: m[k] for k in ("role", "content") if k in m} if isinstance(m, dict) else m for m in turns]
    context = checked_context(turns, "conversation_input", where)
    if uid_field == "pair_uid":
        answers, fields = [_answer(raw, "chosen", where), _answer(raw, "reject", where)], ["chosen.answer", "reject.answer"]
    else:
        losers = raw.get("loser_list")
        if not isinstance(losers, list) or not losers:
            raise InputError(*where, "loser_list", "missing" if "loser_list" not in raw else "expected a non-empty list")
        answers = [_answer(raw, "bon_best", where)] + [_answer({"loser": x}, "loser", where) for x in losers]
        fields = ["bon_best.answer"] + [f"loser_list[{i}].answer" for i in range(len(losers))]
    return [Item(str(uid), path, context, checked_answers(answers, fields, where), 1, f"{uid_field}:{uid}")]


def load_local(path: str, on_invalid: str) -> tuple[list[Item], Counter]:
    """Items of an RMB file, or of every file under a folder (RMB_dataset or a part of it)."""
    return load_files(path, parse, on_invalid, lambda item: item.cluster, "**/*")


def load_hub(dataset: str, revision: str, split: str, on_invalid: str,
             source: str) -> tuple[list[Item], Counter, str]:
    return load_dataset(dataset, revision, split, parse, on_invalid, lambda item: item.cluster, source)


def right(rewards) -> float:
    """Upstream's verdict on one row: 1 when the first answer's reward is strictly higher than every other's."""
    return float(rewards[0] > max(rewards[1:]))


def scores(items: list[Item], rewards: dict, variants, compare, resamples: int, seed: int) -> dict:
    """Upstream's accuracies per goal and set and the RMB score, with intervals; per scenario, without."""
    everyone = {**rewards, **length_rewards(items)}
    verdicts = {v: np.array([right(r) for r in rs]) for v, rs in everyone.items()}

    def score(variant, selection) -> dict:
        out = {key: float(verdicts[variant][ix].mean()) for key, ix in selection.items()}
        if all(key in out for key in SCORES):
            out["score"] = mean_of(out[key] for key in SCORES)
        return out

    groups = subset_groups(items, lambda item: "{1}.{0}".format(*kind_and_goal(item)))
    out = upstream_scores(score, list(everyone), compare, groups, [item.cluster for item in items], resamples, seed)
    out["scenarios"] = {path: {v: round(float(verdicts[v][ix].mean()), 6) for v in everyone}
                        for path, ix in sorted(subset_groups(items).items())}
    return out


def records(items: list[Item], rewards: dict, name: str, seed: int) -> list:
    pairwise = [i for i, item in enumerate(items) if kind_and_goal(item)[0] == "pairwise"]
    bon = [i for i, item in enumerate(items) if kind_and_goal(item)[0] == "bon"]
    only = lambda ix: {v: [rs[i] for i in ix] for v, rs in rewards.items()}  # noqa: E731
    suite = lambda item: "rmb/{}/{}/{}".format(name, *kind_and_goal(item))  # noqa: E731
    return (pair_records([items[i] for i in pairwise], only(pairwise), lambda item, i, j: suite(item), seed)
            + choice_records([items[i] for i in bon], only(bon), suite, seed)
            + pair_records([items[i] for i in bon], only(bon), lambda item, i, j: f"{suite(item)}/pairs", seed))


def headline(metrics: dict) -> dict[str, float]:
    """Each model's four accuracies and RMB score."""
    return candidates.headline(metrics)


def report(name: str, metrics: dict) -> str:
    present = [k for k in SCORES if any(k in m for m in metrics["upstream"]["models"].values())]
    columns = [(k, f"{k.split('.')[0]} {'BoN' if k.endswith('bon') else 'pairwise'}") for k in present]
    columns += [("score", "RMB score")] if len(present) == len(SCORES) else []
    table = upstream_table(metrics["upstream"], columns, PUBLISHED, "score")
    return (f"# RMB: {name}\n\nScores as upstream computes them (Zhou-Zoey/RMB-Reward-Model-Benchmark "
            "eval/scripts/my_run_rm.py; Best-of-N by the paper's rule): pairwise, the share of pairs whose chosen "
            "answer gets the strictly higher reward; BoN, the share of rows whose best answer beats every loser; "
            "multi-turn contexts kept whole; the RMB score is the mean of the four (only with all four); [95% "
            "bootstrap CI]. `longer answer wins` is pairwise's length reference; BoN's are the longest and shortest "
            "answer (on pairwise they are the longer and the shorter answer). Per-scenario accuracies, per-row "
            f"accuracies with our tie rule (½) and every length view: metrics.json.\n\n{skipped_line(metrics)}"
            f"{table}\n")
