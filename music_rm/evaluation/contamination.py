"""Decontamination: which training prompts share a word 13-gram (decontaminate.ngram; Skywork's choice for its
v0.2 set) with the prompts of an evaluation suite the pipeline runs, counted per suite, and with
decontaminate.drop the training items to leave out (contrast leaves them out; stages/decontaminate.py).

Keys and normalisation: data/ngrams.py. Each side is a list of items, each item one or more prompts (lists of user
messages); an item overlaps another when a key of one of its prompts is a key of one of the other's.
- Training: the original train pairs (data/fetch/train.jsonl, and reserve.jsonl, the diversity-matched control's:
  the user messages of both sides) and the MUSIC train
  trees (data/simulate/trees.jsonl, split train: their seed prompt, and every user message of both branches,
  the simulated ones too).
- Suites, each read by the loader its stage uses, whole (a suite's `limit`, a quick run, scores a part of it; this
  counts and drops against all of it): `held_out/original` (data/fetch/test.jsonl; disjoint by the split's
  exact prompt hash, not by n-grams), `held_out/music` (the held-out trees, as the training trees),
  `mt_bench/<name>` (the questions with votes, both turns), `reward_bench/<name>` (every format, through
  benchmarks.BENCHMARKS as its stage reads it), `judge/<name>` (its pairs) and `best_of_n/<name>` (its prompts). A
  judge set that is contrast's held-out output (data/contrast/test.jsonl, test_by_k.jsonl: written after this
  stage) is counted as the held-out trees it is cut from, every turn of them; another contrast output is not
  counted, and says why.
"""
from pathlib import Path

from ..core import paths
from ..core.params import Params
from ..data.conversation import read_pairs
from ..data.ngrams import keys, user_texts
from ..data.prompts import read_prompts
from . import mt_bench
from .benchmarks import BENCHMARKS

# contrast's outputs that hold the held-out MUSIC pairs, as a judge set names them
HELD_OUT_MUSIC = {f"{paths.CONTRAST}/test.jsonl", f"{paths.CONTRAST}/test_by_k.jsonl"}
TRAINING = ("original_pairs", "music_trees")


def written_by_contrast(path: str) -> bool:
    """Whether a judge set is one of contrast's outputs, which decontaminate runs before."""
    return Path(path).as_posix().startswith(paths.CONTRAST + "/")


def pair_item(pair: dict) -> list[list[str]]:
    return [user_texts(pair["chosen"], pair["rejected"])]


def tree_item(tree: dict) -> list[list[str]]:
    """A MUSIC tree's prompts: its seed prompt, and its conversation's every user message (so a short seed prompt,
    matched whole, is found inside a longer tree too)."""
    seed_prompt = tree["chosen"][: len(tree["context"]) + 1]
    return [user_texts(seed_prompt), user_texts(tree["chosen"], tree["rejected"])]


def item_keys(prompts: list[list[str]], n: int) -> set[str]:
    return set().union(*(keys(texts, n) for texts in prompts))


def training_items(original: list[dict], trees: list[dict]) -> dict[str, dict[str, list[list[str]]]]:
    """{"original_pairs": {id: prompts}, "music_trees": {id: prompts}} of the training data."""
    return {"original_pairs": {p["id"]: pair_item(p) for p in original},
            "music_trees": {t["id"]: tree_item(t) for t in trees if t["split"] == "train"}}


def suite_items(params: Params, heldout: list[dict], trees: list[dict]) -> tuple[dict[str, list], dict[str, str]]:
    """({suite: its items}, {suite: why it is not counted}) of every suite the params run: the held-out ones and
    each entry of judge.pair_sets, best_of_n.prompt_sets, mt_bench.sources and reward_bench.sources."""
    held_out_trees = [tree_item(t) for t in trees if t["split"] == "test"]
    suites = {"held_out/original": [pair_item(p) for p in heldout], "held_out/music": held_out_trees}
    skipped = {}
    for name, path in params.judge.pair_sets.items():
        if Path(path).as_posix() in HELD_OUT_MUSIC:
            suites[f"judge/{name}"] = held_out_trees
        elif written_by_contrast(path):
            skipped[f"judge/{name}"] = f"{path} is written by contrast, after decontaminate"
        else:
            suites[f"judge/{name}"] = [pair_item(p) for p in read_pairs(path)]
    for name, s in params.best_of_n.prompt_sets.items():
        suites[f"best_of_n/{name}"] = [[user_texts(prompt)] for _, prompt in read_prompts(s.path, s.format, None, 0)[0]]
    for name, s in params.mt_bench.sources.items():
        _, _, conversations = mt_bench.load(s.questions, s.answers, s.human, s.gpt4, None, 0)
        by_question = {qid: messages for (_, qid), messages in conversations.items()}  # every model's: one question
        suites[f"mt_bench/{name}"] = [[user_texts(messages)] for _, messages in sorted(by_question.items())]
    for name, s in params.reward_bench.sources.items():
        items = BENCHMARKS[s.format].load(name, s, params.reward_bench.on_invalid)[0]
        suites[f"reward_bench/{name}"] = [[user_texts(*item.conversations())] for item in items]
    return suites, skipped


def suite_files(params: Params) -> list[str]:
    """The files the suites are read from (the stage logs their hashes), a Hub dataset's aside."""
    files = [path for path in params.judge.pair_sets.values() if not written_by_contrast(path)]
    files += [s.path for s in params.best_of_n.prompt_sets.values()]
    files += [f for s in params.mt_bench.sources.values() for f in (s.questions, s.answers, s.human, s.gpt4)]
    return files + [s.path for s in params.reward_bench.sources.values() if s.kind == "file"]


def overlaps(training: dict[str, dict[str, list]], suites: dict[str, list], n: int) -> tuple[dict, dict]:
    """({suite: {items, items_overlapping, original_pairs_overlapping, music_trees_overlapping}}, {kind: {training
    id: [the suites it overlaps]}}). One index of every suite's keys (key -> the suites that hold it); each training
    item is looked up in it, and the keys found are the only ones a suite item can share with the training data."""
    names = list(suites)
    index: dict[str, int] = {}  # key -> bit mask over `names`
    for i, items in enumerate(suites.values()):
        for item in items:
            for key in item_keys(item, n):
                index[key] = index.get(key, 0) | 1 << i
    found: set[str] = set()
    hits: dict[str, dict[str, list[str]]] = {kind: {} for kind in training}
    for kind, items in training.items():
        for item_id, prompts in items.items():
            shared = item_keys(prompts, n) & index.keys()
            mask = 0
            for key in shared:
                mask |= index[key]
            if mask:
                found |= shared
                hits[kind][item_id] = [name for i, name in enumerate(names) if mask >> i & 1]
    counts = {}
    for name, items in suites.items():
        counts[name] = {"items": len(items),
                        "items_overlapping": sum(1 for item in items if not item_keys(item, n).isdisjoint(found)),
                        **{f"{kind}_overlapping": sum(name in s for s in hits[kind].values()) for kind in training}}
    return counts, hits


def decontaminate(params: Params, original: list[dict], heldout: list[dict], trees: list[dict]
                  ) -> tuple[dict, list[dict], dict[str, list[str]]]:
    """(summary, one row per training item that overlaps a suite: {kind, id, suites}, the training ids contrast
    leaves out: {kind: [ids]}, every overlapping one with decontaminate.drop, none without)."""
    p = params.decontaminate
    training = training_items(original, trees)
    suites, skipped = suite_items(params, heldout, trees)
    counts, hits = overlaps(training, suites, p.ngram)
    dropped = {kind: sorted(hits[kind]) if p.drop else [] for kind in TRAINING}
    summary = {"ngram": p.ngram, "training": {kind: len(items) for kind, items in training.items()},
               "suites": {**counts, **{name: {"not_counted": why} for name, why in skipped.items()}},
               "overlapping": {kind: len(hits[kind]) for kind in TRAINING}, "drop": p.drop,
               "dropped": {kind: len(ids) for kind, ids in dropped.items()}}
    rows = [{"kind": kind, "id": item_id, "suites": names}
            for kind in TRAINING for item_id, names in hits[kind].items()]
    return summary, rows, dropped


def headline(summary: dict) -> dict[str, int]:
    """The numbers a pipeline run carries from decontaminate (tracking.log_results): the training items that
    overlap any suite."""
    return {f"overlapping_{kind}": summary["overlapping"][kind] for kind in TRAINING}
