"""Pairwise accuracy of reward models on held-out pairs, over training seeds, with bootstrap intervals.

Suites: `original` (held-out seed pairs) and `music_k<K>` for every K = 1 … simulate.turns: the held-out
MUSIC pairs that contrast cut from the test trees after K turns, so a model trained at one K is also scored
at every other K. Every (variant, seed) model scores every pair; beside them, on the same pairs, the "longer
answer wins" reference (margin: the chosen side's assistant characters after the shared part minus the
rejected side's, recorded with seed 0). Every number is computed from the per-pair records (records.py, written
to records.csv) by estimates.py: a variant's accuracy on a suite is the mean over its seeds, with a 95% interval
over seeds and pairs; each seed's accuracy and tie count are reported beside it; for each compared pair of
variants, the difference of their accuracies on the shared pairs.
"""
import logging
import tempfile
from pathlib import Path

from ..core.errors import InputError
from ..core.io import atomic_path, write_json, write_text
from ..data.conversation import length_difference
from ..reward.model import load_reward_model
from . import plots
from .estimates import SuiteResult, by_suite, suite_result
from .records import LONGER_ANSWER, Record, write_records
from .report import cell, html_report, markdown_table

log = logging.getLogger(__name__)
PLOTS = ("accuracy_by_k.png", "margins.png", "rewards.png", "training_curves.png")  # eval's plots (dvc.yaml)


def music_suites(test_by_k: list[dict]) -> dict[str, list[dict]]:
    """Held-out MUSIC pairs by K (contrast's test_by_k.jsonl), as suites `music_k<K>` in K order."""
    suites: dict[int, list[dict]] = {}
    for pair in test_by_k:
        suites.setdefault(pair["k"], []).append(pair)
    return {f"music_k{k}": suites[k] for k in sorted(suites)}


def score_models(model_dirs: dict[tuple[str, int], str], suites: dict[str, list[dict]], batch_size: int,
                 max_length: int | None, cpu_dtype: str, cache: bool) -> tuple[dict, dict]:
    """Every (variant, seed) model on every suite, one model in memory at a time: ({variant: {seed: {suite:
    margins}}}, {variant: {seed: {suite: (chosen rewards, rejected rewards)}}})."""
    margins: dict = {}
    rewards: dict = {}
    for (variant, seed), model_dir in model_dirs.items():
        log.info("scoring %s seed %d on %d suites", variant, seed, len(suites))
        by_suite_m = margins.setdefault(variant, {}).setdefault(seed, {})
        by_suite_r = rewards.setdefault(variant, {}).setdefault(seed, {})
        with load_reward_model(model_dir, cpu_dtype=cpu_dtype, cache=cache) as rm:
            for suite, pairs in suites.items():
                chosen, rejected = (rm.score_pairs(pairs, batch_size, max_length, f"{variant} seed {seed}: {suite}")
                                    if pairs else ([], []))
                by_suite_r[suite] = (chosen, rejected)
                by_suite_m[suite] = [c - r for c, r in zip(chosen, rejected)]
    return margins, rewards


def heldout_records(suites: dict[str, list[dict]], margins: dict) -> list[Record]:
    """One record per (suite, pair, model): every (variant, seed) of `margins` and the longer-answer reference
    (seed 0). A pair's id is its item and its cluster; a suite must not hold one id twice."""
    rows = []
    for suite, pairs in suites.items():
        ids = [str(p["id"]) for p in pairs]
        if len(set(ids)) != len(ids):
            twice = next(i for i in ids if ids.count(i) > 1)
            raise InputError(suite, ids.index(twice) + 1, "id", f"{twice!r} appears twice in the suite")
        lengths = [length_difference(p["chosen"], p["rejected"]) for p in pairs]
        rows += [Record.of(suite, i, LONGER_ANSWER, 0, n, length=n) for i, n in zip(ids, lengths)]
        for variant, by_seed in margins.items():
            for seed, by_suite_m in by_seed.items():
                rows += [Record.of(suite, i, variant, seed, m, length=n) for i, m, n in zip(ids, by_suite_m[suite], lengths)]
    return rows


def results_of(records: list[Record], variants, compare: list, resamples: int, seed: int) -> dict[str, SuiteResult]:
    """{suite: SuiteResult}: the trained variants in their order, then the longer-answer reference."""
    return {suite: suite_result(rows, compare, resamples, seed, order=[*variants, LONGER_ANSWER])
            for suite, rows in by_suite(records).items()}


def evaluate(suites: dict[str, list[dict]], margins: dict, compare: list, resamples: int,
             seed: int) -> tuple[list[Record], dict[str, SuiteResult]]:
    """(records, results) of scored margins."""
    records = heldout_records(suites, margins)
    return records, results_of(records, list(margins), compare, resamples, seed)


def headline(metrics: dict) -> dict[str, float]:
    """The numbers a pipeline run carries from eval (tracking.carry): every model's accuracy on every suite."""
    return {f"{suite}.{variant}.accuracy": r["estimate"] for suite, s in metrics["suites"].items()
            for variant, r in s["models"].items() if r["estimate"] is not None}


def row_label(variant: str, seeds: int) -> str:
    """A variant's row name: the longer-answer reference by what it is; a variant with several seeds with their
    count."""
    if variant == LONGER_ANSWER:
        return "longer answer wins"
    return variant if seeds == 1 else f"{variant} ({seeds})"


def comparison_rows(results: dict[str, SuiteResult]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per variant (with its number of seeds when several), mean accuracy over seeds
    [95% CI] per suite (n in the header); the longer-answer reference last."""
    suites = list(results)
    first = results[suites[0]].models
    several = any(r.seeds > 1 for v, r in first.items() if v != LONGER_ANSWER)
    return ["variant (seeds)" if several else "variant", *(f"{s} (n={results[s].models[LONGER_ANSWER].n})"
                                                          for s in suites)], [
        [row_label(v, r.seeds), *(cell(results[s].models[v].estimate, results[s].models[v].ci_low,
                                       results[s].models[v].ci_high) for s in suites)] for v, r in first.items()]


def ties_line(results: dict[str, SuiteResult]) -> str:
    """Where verdicts tied (each counted one half): per model (variant, and seed when several) and suite."""
    found = []
    variants = list(next(iter(results.values())).models)
    for variant in variants:
        for suite, s in results.items():
            r = s.models[variant]
            for seed, by_seed in r.per_seed.items():
                if by_seed["ties"]:
                    name = ("longer answer wins" if variant == LONGER_ANSWER else variant) + (
                        f" seed {seed}" if r.seeds > 1 else "")
                    found.append(f"{name} on {suite}: {by_seed['ties']}")
    return "Ties (equal margins, each counted one half): " + ("; ".join(found) if found else "none") + "."


def seed_rows(results: dict[str, SuiteResult]) -> tuple[list[str], list[list[str]]] | None:
    """(header, rows): each seed's accuracy per suite, one row per (variant, seed); None when every variant has
    one seed (the comparison table says it all)."""
    suites = list(results)
    first = {v: r for v, r in results[suites[0]].models.items() if v != LONGER_ANSWER}
    if all(r.seeds == 1 for r in first.values()):
        return None
    rows = [[v, seed, *("n/a" if results[s].models[v].per_seed[seed]["estimate"] is None
                        else f"{results[s].models[v].per_seed[seed]['estimate']:.3f}" for s in suites)]
            for v, r in first.items() for seed in r.per_seed]
    return ["variant", "seed", *suites], rows


def difference_rows(results: dict[str, SuiteResult]) -> tuple[list[str], list[list[str]]] | None:
    """(header, rows): one row per compared pair, difference of mean accuracies [95% CI over both arms' seeds and
    the pairs] per suite (pairs in the header); None without comparisons."""
    suites = list(results)
    names = list(results[suites[0]].differences)
    if not names:
        return None
    return ["difference", *(f"{s} (n={results[s].differences[names[0]].n})" for s in suites)], [
        [name, *(cell(results[s].differences[name].estimate, results[s].differences[name].ci_low,
                      results[s].differences[name].ci_high) for s in suites)] for name in names]


def intro(trained_k: int, resamples: int) -> str:
    return ("Pairwise accuracy: share of held-out pairs whose chosen conversation gets the higher reward (a tie, "
            "equal margins to 6 decimals, counts one half), the mean over a variant's training seeds, with a 95% "
            f"percentile-bootstrap interval over seeds and pairs ({resamples} resamples, each drawing the seeds and "
            "the pairs with replacement); n: the pairs of a suite. original: held-out "
            "seed pairs; music_kK: held-out MUSIC pairs cut after K turns (the music variant was trained at "
            f"K = {trained_k}, contrast.turns). Longer answer wins: the chosen side has more assistant characters "
            "after the shared part (equal lengths are ties). Differences: mean accuracy of the first variant minus "
            "the second's on the same pairs, the interval over both variants' seeds and the shared pairs. Every "
            "number is recomputed from records.csv (one margin per pair and model).")


def pooled(by_seed: dict) -> dict:
    """{suite: values of every seed, one after another}: a variant's margins or rewards over all its seeds."""
    suites = next(iter(by_seed.values()))
    if isinstance(next(iter(suites.values()), None), tuple):
        return {s: tuple(sum((list(v[s][i]) for v in by_seed.values()), []) for i in range(2)) for s in suites}
    return {s: sum((list(v[s]) for v in by_seed.values()), []) for s in suites}


def write_outputs(out: Path, records: list[Record], results: dict[str, SuiteResult], margins: dict, rewards: dict,
                  curves: dict, trained_k: int, resamples: int) -> tuple[dict, str]:
    """records.csv, metrics.json, report.md, a self-contained report.html and the PNG plots, each written
    atomically; `margins` and `rewards` by variant and seed (the histograms pool a variant's seeds), `curves`
    by (variant, seed). Returns (the metrics, the tables as printed)."""
    seeds, diffs = seed_rows(results), difference_rows(results)
    tables = "\n\n".join(t for t in (markdown_table(*comparison_rows(results)), ties_line(results),
                                     markdown_table(*seeds) if seeds else "", markdown_table(*diffs) if diffs else "")
                         if t)
    metrics = {"suites": {suite: r.as_dict() for suite, r in results.items()}}
    pooled_margins = {v: pooled(by_seed) for v, by_seed in margins.items()}
    pooled_rewards = {v: pooled(by_seed) for v, by_seed in rewards.items()}
    over = " (every seed's pairs)" if seeds is not None else ""
    with tempfile.TemporaryDirectory() as tmp:
        files = {name: Path(tmp) / name for name in PLOTS}
        plots.accuracy_by_k({v: {s: r.models[v] for s, r in results.items()} for v in margins},
                            files["accuracy_by_k.png"], "contrasted turns K", "Held-out MUSIC pairs (95% bootstrap CI)",
                            size=(5, 3.2), spread=0.06)
        plots.margin_histogram(pooled_margins, f"music_k{trained_k}", files["margins.png"])
        plots.reward_histogram(pooled_rewards, ["original", f"music_k{trained_k}"], files["rewards.png"])
        plots.training_curves(curves, files["training_curves.png"])
        html = html_report("MUSIC reward models: held-out evaluation", [
            ("Pairwise accuracy", "text", intro(trained_k, resamples)),
            ("By variant and suite", "table", comparison_rows(results)),
            ("Ties", "text", ties_line(results)),
            *([("By training seed", "table", seeds)] if seeds else []),
            *([("Differences", "table", diffs)] if diffs else []),
            ("Accuracy by contrasted turns K", "png", files["accuracy_by_k.png"]),
            (f"Reward margins on held-out MUSIC pairs at K = {trained_k}{over}", "png", files["margins.png"]),
            (f"Rewards of chosen and rejected conversations: held-out original pairs and MUSIC pairs at "
             f"K = {trained_k}{over}", "png", files["rewards.png"]),
            ("Training curves", "png", files["training_curves.png"])])
        for name, src in files.items():
            with atomic_path(out / name) as dst:
                dst.write_bytes(src.read_bytes())
    write_records(out / "records.csv", records)
    write_json(out / "metrics.json", metrics)
    write_text(out / "report.md", f"# Held-out pairwise accuracy\n\n{intro(trained_k, resamples)}\n\n{tables}\n\n"
               "![accuracy by K](accuracy_by_k.png)\n\n![margins](margins.png)\n\n![rewards](rewards.png)\n\n"
               "![training curves](training_curves.png)\n")
    write_text(out / "report.html", html)
    return metrics, tables
