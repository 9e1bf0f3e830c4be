"""Benchmarks whose items are one context and several answers to it, some right and some wrong (RewardBench 2,
RM-Bench, RMB): the item, every answer scored once, the length references, the records of an item and of each of
its comparisons, upstream's scores with a bootstrap interval, and rows that break a benchmark's schema.

An item's `answers` are its right answers first (`correct` of them), then the wrong ones: RewardBench 2's order
(chosen, then rejected) and RM-Bench's (three chosen, three rejected). A reward model gives each answer one reward,
the reward of the conversation context + answer, rounded to 6 decimals (records.rounded) before anything is computed
from it: upstream's scores and the records read the same numbers, and two rewards equal to 6 decimals tie.

Records (records.py) of an item, for each reward model (its seed) and each reference (seed 0):
- `pair_records`, one per comparison of a right answer i with a wrong answer j: item `<id>#<i>><j>` (answer
  indices), margin reward(i) − reward(j), length characters of i minus j (data.conversation.length_difference);
  the reference `longer_answer`, whose margin is that length.
- `choice_records`, one per item, "every right answer beats every wrong one": item `<id>`, margin the lowest
  reward of a right answer minus the highest of a wrong one (for one right answer: its reward minus the best wrong
  one's, the Best-of-N question); length the same of characters (shortest right answer minus longest wrong one);
  the references `longest_answer` and `shortest_answer` (records.LENGTH_PICKERS: an answer rewarded by its
  characters or by their negative, the choice a model that only rewards length makes).
Every record carries the item's cluster: an item's comparisons resample together (and RewardBench 2's Ties rows of
one prompt, which share a cluster).
"""
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..data.conversation import SchemaError, length_difference, validate_content, validate_conversation
from ..data.sources import read_hf, read_rows
from .estimates import by_suite, suite_result
from .records import LENGTH_PICKERS, LONGER_ANSWER, Record, rounded
from .report import cell, markdown_table
from .stats import draws, interval

# Published scores printed beside ours: Skywork-Reward-V2-Llama-3.1-8B, arXiv 2507.01352 (each module's PUBLISHED)
ANCHOR_MODEL, ANCHOR_SOURCE = "Skywork-Reward-V2-Llama-3.1-8B", "arXiv 2507.01352"
ANCHOR = f"{ANCHOR_MODEL} ({ANCHOR_SOURCE})"
REFERENCES = (LONGER_ANSWER, *LENGTH_PICKERS)


@dataclass(frozen=True)
class Item:
    """One benchmark row: `context` (messages ending with a user message), `answers` (the right ones first),
    `correct` (how many are right), `source_id` (the row's id in its source), `subset`, `cluster`."""
    source_id: str
    subset: str
    context: tuple
    answers: tuple
    correct: int
    cluster: str

    def conversations(self) -> list[list[dict]]:
        return [[*self.context, {"role": "assistant", "content": answer}] for answer in self.answers]


def checked_answers(answers, fields, where) -> tuple:
    """The answers of a row, each a message's text (data.conversation.validate_content); `fields`: each one's field
    for the error line, `where`: (file, row)."""
    for answer, field in zip(answers, fields):
        try:
            validate_content(answer, field)
        except SchemaError as e:
            raise InputError(*where, e.field, e.reason) from None
    return tuple(answers)


def checked_context(messages, field: str, where) -> tuple:
    """A row's context: a conversation (data.conversation.validate_conversation) that ends with a user message."""
    if not isinstance(messages, list) or not messages:
        raise InputError(*where, field, "expected a non-empty list of messages")
    try:
        validate_conversation([*messages, {"role": "assistant", "content": "answer"}], field)
    except SchemaError as e:
        if e.field.startswith(f"{field}[{len(messages)}]"):  # the answer after it: the context ends with an answer
            raise InputError(*where, field, "must end with a user message") from None
        raise InputError(*where, e.field, e.reason) from None
    return tuple(messages)


def text_field(raw: dict, name: str, where) -> str:
    if not isinstance(raw.get(name), str):
        raise InputError(*where, name, "missing" if name not in raw else
                         f"expected a string, got {type(raw[name]).__name__}")
    return raw[name]


def answer_list(raw: dict, name: str, where, count: int | None = None) -> list:
    """A list field of answers; `count`: exactly that many."""
    value = raw.get(name)
    if not isinstance(value, list):
        raise InputError(*where, name, "missing" if name not in raw else
                         f"expected a list of answers, got {type(value).__name__}")
    if count is not None and len(value) != count:
        raise InputError(*where, name, f"expected {count} answers, got {len(value)}")
    if not value:
        raise InputError(*where, name, "no answers")
    return value


def row_id(raw: dict, where) -> str:
    """The row's id in its source (a string or an integer); `<file>:<row>` for a row without one."""
    value = raw.get("id")
    if value is None:
        return f"{str(where[0]).rsplit('/', 1)[-1]}:{where[1]}"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(*where, "id", f"expected a string or an integer, got {type(value).__name__}")
    return str(value)


def parse_rows(rows, path, parse, on_invalid: str) -> tuple[list[Item], Counter]:
    """Items of a file's rows ((row number, raw row), as data.sources.read_rows gives them, an InputError in place of
    an unreadable line); `parse(raw, where)` gives one row's items or raises InputError. fail: the first bad row
    stops the stage (the error names file, row and field); skip: each is counted by field and reason."""
    items, skipped = [], Counter()
    for row_no, raw in rows:
        try:
            if isinstance(raw, InputError):
                raise raw
            if not isinstance(raw, dict):
                raise InputError(path, row_no, "row", f"expected an object, got {type(raw).__name__}")
            items.extend(parse(raw, (path, row_no)))
        except InputError as e:
            if on_invalid == "fail":
                raise
            skipped[f"{(e.field or 'line').split('[')[0]}: {e.reason}"] += 1
    return items, skipped


def _loaded(items: list[Item], skipped: Counter, origin, key) -> tuple[list[Item], Counter]:
    if not items:
        raise InputError(origin, None, None, f"no valid rows ({sum(skipped.values())} skipped: {dict(skipped)})")
    twice = sorted(k for k, n in Counter(map(key, items)).items() if n > 1)
    if twice:
        raise InputError(origin, None, "id", f"ids that repeat: {twice[:5]}")
    return items, skipped


def load_files(path: str, parse, on_invalid: str, key, pattern: str = "*") -> tuple[list[Item], Counter]:
    """Items of a benchmark file, or of the folder's .parquet, .jsonl and .json files (`pattern` "**/*": under it
    too), and the rows skipped by reason (parse_rows); `key(item)` must not repeat (an item's id)."""
    path = Path(path)
    files = (sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix in (".parquet", ".jsonl", ".json"))
             if path.is_dir() else [path])
    if not files:
        raise InputError(path, None, None, "no .parquet, .jsonl or .json files in this folder")
    items, skipped = [], Counter()
    for f in files:
        got, bad = parse_rows(read_rows(f), f, parse, on_invalid)
        items, skipped = items + got, skipped + bad
    return _loaded(items, skipped, path, key)


def load_dataset(dataset: str, revision: str, split: str, parse, on_invalid: str, key,
                 source: str) -> tuple[list[Item], Counter, str]:
    """Items of a Hub dataset (or a local dataset folder) through `datasets`, the rows skipped, the commit resolved;
    `source`: its key in reward_bench.sources, as a Hub failure names it."""
    rows, resolved = read_hf(dataset, revision, split, None, f"reward_bench.sources.{source}.hf_dataset",
                             "a source of kind file")
    origin = f"{dataset}@{revision}:{split}"
    return (*_loaded(*parse_rows(rows, origin, parse, on_invalid), origin, key), resolved)


def reward_lists(flat, items: list[Item]) -> list[list[float]]:
    """Rewards in the items' answer order (one flat list, as RewardModel.score gives them), rounded, per item."""
    out, start = [], 0
    for item in items:
        out.append([rounded(r) for r in flat[start:start + len(item.answers)]])
        start += len(item.answers)
    return out


def score_items(model, items: list[Item], batch_size: int, max_length: int | None, desc: str) -> list[list[float]]:
    """Every answer's reward from a reward model (reward/model.py), per item."""
    return reward_lists(model.score([c for item in items for c in item.conversations()], batch_size, max_length, desc),
                        items)


def length_rewards(items: list[Item]) -> dict[str, list[list[float]]]:
    """The length pickers' "rewards": each answer's characters (longest_answer) or their negative (shortest_answer)."""
    return {name: [[float(sign * len(a)) for a in item.answers] for item in items]
            for name, sign in LENGTH_PICKERS.items()}


def pair_records(items: list[Item], rewards: dict, suite_of, seed: int) -> list[Record]:
    """One record per (right answer, wrong answer) of each item and reward model (`rewards`: {variant: rewards per
    item}), and the longer-answer reference; `suite_of(item, i, j)` names the suite."""
    out = []
    for k, item in enumerate(items):
        conversations = item.conversations()
        for i in range(item.correct):
            for j in range(item.correct, len(item.answers)):
                suite, key = suite_of(item, i, j), f"{item.source_id}#{i}>{j}"
                length = length_difference(conversations[i], conversations[j])
                out += [Record.of(suite, key, variant, seed, r[k][i] - r[k][j], item.cluster, length)
                        for variant, r in rewards.items()]
                out.append(Record.of(suite, key, LONGER_ANSWER, 0, length, item.cluster, length))
    return out


def choice_margin(rewards: list[float], correct: int) -> float:
    """The lowest reward of a right answer minus the highest of a wrong one: positive when every right answer wins."""
    return min(rewards[:correct]) - max(rewards[correct:])


def choice_records(items: list[Item], rewards: dict, suite_of, seed: int) -> list[Record]:
    """One record per item and reward model: does every right answer beat every wrong one; the length pickers
    beside them (seed 0); `suite_of(item)` names the suite."""
    lengths = length_rewards(items)
    out = []
    for k, item in enumerate(items):
        length = int(choice_margin(lengths["longest_answer"][k], item.correct))
        out += [Record.of(suite_of(item), item.source_id, variant, s, choice_margin(r[k], item.correct), item.cluster,
                          length)
                for (variant, s), r in [*(((v, seed), r) for v, r in rewards.items()),
                                        *(((v, 0), r) for v, r in lengths.items())]]
    return out


def suite_results(records: list[Record], variants, compare, resamples: int, seed: int) -> dict:
    """Every suite's accuracies and differences (estimates.py), the models in `variants` order, the references after."""
    order = [*variants, LONGER_ANSWER, *LENGTH_PICKERS]
    return {suite: suite_result(rows, compare, resamples, seed, order=order).as_dict()
            for suite, rows in by_suite(records).items()}


def upstream_scores(score, variants, compare, groups: dict[str, list[int]], clusters: list[str], resamples: int,
                    seed: int) -> dict:
    """Upstream's scores of every model and reference with 95% percentile-bootstrap intervals, and the differences
    `compare` asks for (paired: one resample for all). `score(variant, selection)` gives {name: value or None} from
    {subset: item indices}; `groups`: {subset: its item indices}, `clusters`: each item's cluster. Each resample
    draws every subset's clusters with replacement.
    Returns {"models": {variant: {name: estimate}}, "differences": {"a-b": {name: estimate}}}."""
    pairs = [(a, b) for a, b in compare if a in variants and b in variants]

    def everything(selection) -> dict:
        values = {v: score(v, selection) for v in variants}
        out = {(v, n): x for v, named in values.items() for n, x in named.items()}
        for a, b in pairs:
            out.update({(f"{a}-{b}", n): None if x is None or values[b][n] is None else x - values[b][n]
                        for n, x in values[a].items()})
        return out

    rng = np.random.default_rng(seed)
    indices = {s: (np.asarray(ix), draws(len(ix), [clusters[i] for i in ix], rng)) for s, ix in groups.items()}
    point = everything({s: list(ix) for s, (ix, _) in indices.items()})
    samples = {key: [] for key in point}
    for _ in range(resamples):
        for key, value in everything({s: list(ix[draw()]) for s, (ix, draw) in indices.items()}).items():
            if value is not None and not np.isnan(value):
                samples[key].append(value)
    out = {"models": {v: {} for v in variants}, "differences": {f"{a}-{b}": {} for a, b in pairs}}
    for (who, name), value in point.items():
        low, high = interval(samples[(who, name)]) if value is not None and samples[(who, name)] else (None, None)
        block = out["models"].get(who, out["differences"].get(who))
        block[name] = {"estimate": None if value is None else round(float(value), 6), "ci_low": low, "ci_high": high}
    return out


def subset_groups(items: list[Item], key=lambda item: item.subset) -> dict[str, list[int]]:
    """{subset (or `key`): the indices of its items}, subsets in the order they first appear."""
    out = {}
    for i, item in enumerate(items):
        out.setdefault(key(item), []).append(i)
    return out


def mean_of(values) -> float | None:
    """The mean of scores that are all there; None when any is missing."""
    values = list(values)
    return None if not values or any(v is None for v in values) else float(np.mean(values))


def results(module, items: list[Item], rewards: dict, rows: list[Record], variants, compare, resamples: int,
            seed: int) -> dict:
    """metrics.json's benchmark part: every suite's accuracies from the records (estimates.py), upstream's scores
    (`module.scores`) and the published anchor (`module.PUBLISHED`)."""
    return {"suites": suite_results(rows, variants, compare, resamples, seed),
            "upstream": module.scores(items, rewards, variants, compare, resamples, seed),
            "published": {"model": ANCHOR_MODEL, "source": ANCHOR_SOURCE, "score": module.PUBLISHED}}


def headline(metrics: dict, keep=lambda name: True) -> dict[str, float]:
    """What the pipeline run carries: every reward model's upstream scores (those `keep` keeps), no reference's."""
    return {f"{variant}.{name}": s["estimate"] for variant, named in metrics["upstream"]["models"].items()
            if variant not in REFERENCES for name, s in named.items() if keep(name)}


def labelled(variant: str) -> str:
    return {LONGER_ANSWER: "longer answer wins", "longest_answer": "longest answer wins",
            "shortest_answer": "shortest answer wins"}.get(variant, variant)


def upstream_table(upstream: dict, columns: list[tuple[str, str]], anchor: float | None = None,
                   anchor_column: str | None = None) -> str:
    """Markdown: one row per model and reference of `upstream` (upstream_block), a column per (score, header) and,
    with `anchor`, the published model's row with its one score in `anchor_column`."""
    rows = [[labelled(variant), *(cell(*(scores.get(key, {}).get(f) for f in ("estimate", "ci_low", "ci_high")))
                                  for key, _ in columns)]
            for variant, scores in upstream["models"].items()]
    if anchor is not None:
        rows.append([f"published: {ANCHOR}", *(f"{anchor:.3f}" if key == anchor_column else "" for key, _ in columns)])
    return markdown_table(["variant", *(header for _, header in columns)], rows)


def skipped_line(metrics: dict) -> str:
    return (f"Rows skipped (reward_bench.on_invalid: skip): {metrics['skipped']} "
            f"{metrics['skipped_by_reason']}\n\n" if metrics.get("skipped") else "")
