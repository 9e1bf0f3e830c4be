"""The benchmarks of reward_bench.sources, by `format`: how each is loaded (a local copy or `datasets`), scored and
reported, behind one interface the reward_bench stage calls.

Every format's rows become `candidates.Item`s (a context and its answers, the right ones first; RewardBench's and
LLMBar's pairs too: one chosen and one rejected answer), every answer gets one reward from each reward model, and
the format's module turns the rewards into records, metrics.json, its headline numbers and report.md:
reward_bench and llmbar: reward_bench.py; reward_bench_2: reward_bench_2.py; rm_bench: rm_bench.py; rmb: rmb.py.
"""
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from . import reward_bench, reward_bench_2, rm_bench, rmb
from .candidates import Item, results
from .records import LONGER_ANSWER


@dataclass(frozen=True)
class Benchmark:
    """One format. `load(name, source, on_invalid)`: (items, rows skipped by reason, the Hub commit or None);
    `evaluate(items, rewards, name, seed, variants, compare, resamples, bootstrap_seed)`: (records, metrics);
    `headline(metrics)`: what the pipeline run carries; `report(name, metrics)`: report.md."""
    title: str
    load: Callable
    evaluate: Callable
    headline: Callable
    report: Callable


def _pairs(items: list[Item]) -> list[dict]:
    return [{"chosen": c, "rejected": r, "subset": item.subset, "source_id": item.source_id}
            for item in items for c, r in [item.conversations()]]


def _item(pair: dict) -> Item:
    return Item(pair["source_id"], pair["subset"], tuple(pair["chosen"][:-1]),
                (pair["chosen"][-1]["content"], pair["rejected"][-1]["content"]), 1, pair["source_id"])


def _load_reward_bench(name: str, source, on_invalid: str):
    """RewardBench's and LLMBar's rows (a bad row stops the stage: on_invalid is not read for them)."""
    pairs, resolved = reward_bench.load_source(name, source)
    return [_item(p) for p in pairs], Counter(), resolved


def _evaluate_reward_bench(items, rewards, name, seed, variants, compare, resamples, bootstrap_seed):
    margins = {v: [r[0] - r[1] for r in rs] for v, rs in rewards.items()}
    rows = reward_bench.records(_pairs(items), margins, name, seed)
    return rows, reward_bench.results(rows, variants, compare, resamples, bootstrap_seed)


def _report_reward_bench(name: str, metrics: dict) -> str:
    table = reward_bench.table({**metrics["reward_models"], "longer answer wins": metrics[LONGER_ANSWER]})
    return (f"# RewardBench: {name}\n\nSection scores: accuracy per subset, weighted by upstream's example counts; "
            "[95% bootstrap CI]; a reward tie (equal to 6 decimals) counts ½ (upstream: 0). Subsets: "
            f"{metrics['subsets']}\n\n{table}\n")


def _candidates(module, title: str) -> Benchmark:
    def load(name, source, on_invalid):
        if source.kind == "file":
            return (*module.load_local(source.path, on_invalid), None)
        return module.load_hub(source.hf_dataset, source.hf_revision, source.hf_split, on_invalid, name)

    def evaluate(items, rewards, name, seed, variants, compare, resamples, bootstrap_seed):
        rows = module.records(items, rewards, name, seed)
        return rows, results(module, items, rewards, rows, variants, compare, resamples, bootstrap_seed)

    return Benchmark(title, load, evaluate, module.headline, module.report)


_REWARD_BENCH = Benchmark("RewardBench", _load_reward_bench, _evaluate_reward_bench, reward_bench.headline,
                          _report_reward_bench)
BENCHMARKS = {"reward_bench": _REWARD_BENCH, "llmbar": _REWARD_BENCH,
              "reward_bench_2": _candidates(reward_bench_2, "RewardBench 2"),
              "rm_bench": _candidates(rm_bench, "RM-Bench"), "rmb": _candidates(rmb, "RMB")}


def subset_counts(items: list[Item]) -> dict:
    return dict(sorted(Counter(item.subset for item in items).items()))
