"""Pairwise accuracy of reward models on held-out pairs, over training seeds, with bootstrap intervals.

Suites: `original` (held-out seed pairs) and `music_k<K>` for every K = 1 … simulate.turns: the held-out
MUSIC pairs that contrast cut from the test trees after K turns, so a model trained at one K is also scored
at every other K. Every (variant, seed) model scores every pair; beside them, on the same pairs, the "longer
answer wins" reference (margin: the chosen side's assistant characters after the shared part minus the
rejected side's, recorded with seed 0). Every number is computed from the per-pair records (records.py, written
to records.csv): a verdict is `records.outcome` of the rounded margin (a tie counts one half). A variant's
accuracy on a suite is the mean over its seeds of each seed's accuracy, with a 95% interval from
`stats.seeded_bootstrap` (each resample draws the seeds with replacement and the pairs with replacement, the
same pairs for every seed); each seed's accuracy and tie count are reported beside it. For each compared pair
of variants, the difference of their accuracies with the same bootstrap over both arms' seeds and the shared
pairs. With one seed these are the plain (and paired) percentile bootstrap over pairs.
"""
import logging
import tempfile
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.io import atomic_path, write_json, write_text
from ..data.conversation import shared_prefix_length
from ..reward.model import load_reward_model
from .records import is_tie, outcome, rounded, write_records
from .report import html_report, pyplot, save_png, variant_color
from .stats import cell, markdown_table, seeded_bootstrap

log = logging.getLogger(__name__)
LONGER_ANSWER = "longer_answer"  # the reference's name in records and metrics


def music_suites(test_by_k: list[dict]) -> dict[str, list[dict]]:
    """Held-out MUSIC pairs by K (contrast's test_by_k.jsonl), as suites `music_k<K>` in K order."""
    suites: dict[int, list[dict]] = {}
    for pair in test_by_k:
        suites.setdefault(pair["k"], []).append(pair)
    return {f"music_k{k}": suites[k] for k in sorted(suites)}


def answer_chars(pair: dict, side: str) -> int:
    """Characters of the assistant messages of one side after the part both conversations share."""
    start = shared_prefix_length(pair["chosen"], pair["rejected"])
    return sum(len(m["content"]) for m in pair[side][start:] if m["role"] == "assistant")


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


def heldout_records(suites: dict[str, list[dict]], margins: dict) -> list[dict]:
    """One record per (suite, pair, model): every (variant, seed) of `margins` and the longer-answer reference
    (seed 0). A pair's id is its item and its cluster; a suite must not hold one id twice."""
    rows = []
    for suite, pairs in suites.items():
        ids = [str(p["id"]) for p in pairs]
        if len(set(ids)) != len(ids):
            twice = next(i for i in ids if ids.count(i) > 1)
            raise InputError(suite, ids.index(twice) + 1, "id", f"{twice!r} appears twice in the suite")
        rows += [{"suite": suite, "item": i, "variant": LONGER_ANSWER, "seed": 0,
                  "margin": answer_chars(p, "chosen") - answer_chars(p, "rejected")} for i, p in zip(ids, pairs)]
        for variant, by_seed in margins.items():
            for seed, by_suite in by_seed.items():
                rows += [{"suite": suite, "item": i, "variant": variant, "seed": seed, "margin": m}
                         for i, m in zip(ids, by_suite[suite])]
    return rows


def margin_tables(records: list[dict]) -> dict:
    """{variant: {suite: (seeds, items, margins as a seeds × items array)}} from records, items in one order
    (sorted) for every model of a suite."""
    cells: dict = {}
    for r in records:
        cells.setdefault(r["variant"], {}).setdefault(r["suite"], {}).setdefault(int(r["seed"]), {})[
            str(r["item"])] = rounded(r["margin"])
    tables: dict = {}
    for variant, by_suite in cells.items():
        for suite, by_seed in by_suite.items():
            seeds = sorted(by_seed)
            items = sorted(by_seed[seeds[0]])
            if any(sorted(by_seed[s]) != items for s in seeds):
                raise ValueError(f"{variant} on {suite}: the seeds scored different pairs")
            tables.setdefault(variant, {})[suite] = (
                seeds, items, np.array([[by_seed[s][i] for i in items] for s in seeds], dtype=float))
    return tables


def outcomes(margins: np.ndarray) -> np.ndarray:
    return np.vectorize(outcome, otypes=[float])(margins) if margins.size else margins


def summarise(records: list[dict], resamples: int, seed: int) -> dict:
    """{variant: {suite: {accuracy, ci_low, ci_high, n, ties, mean_margin, seeds: {seed: {accuracy, ties}}}}}:
    the accuracy is the mean over seeds, its interval `seeded_bootstrap`'s; n counts pairs, ties all seeds'."""
    results: dict = {}
    for variant, by_suite in margin_tables(records).items():
        for suite, (seeds, items, margins) in by_suite.items():
            won = outcomes(margins)
            boot = seeded_bootstrap(won, resamples=resamples, seed=seed)
            ties = [int(sum(is_tie(m) for m in row)) for row in margins]
            results.setdefault(variant, {})[suite] = {
                "accuracy": boot["estimate"], "ci_low": boot["ci_low"], "ci_high": boot["ci_high"], "n": len(items),
                "ties": sum(ties), "mean_margin": round(float(margins.mean()), 6) if items else None,
                "seeds": {str(s): {"accuracy": round(float(row.mean()), 6) if items else None, "ties": t}
                          for s, row, t in zip(seeds, won, ties)}}
    return results


def differences(margins: dict, compare: list, resamples: int, seed: int) -> dict:
    """{"a-b": {suite: {difference, ci_low, ci_high, n, seeds_a, seeds_b}}} for each compared pair of variants
    on the same pairs: `margins` is {variant: {suite: margins}}, one list per suite for one seed or a seeds ×
    pairs array; verdicts by `records.outcome`, the interval `seeded_bootstrap`'s over both arms' seeds and the
    shared pairs."""
    out = {}
    for a, b in compare:
        if a in margins and b in margins:
            out[f"{a}-{b}"] = {}
            for suite in margins[a]:
                won_a = outcomes(np.atleast_2d(np.asarray(margins[a][suite], dtype=float)))
                won_b = outcomes(np.atleast_2d(np.asarray(margins[b][suite], dtype=float)))
                boot = seeded_bootstrap(won_a, won_b, resamples=resamples, seed=seed)
                out[f"{a}-{b}"][suite] = {"difference": boot["estimate"], "ci_low": boot["ci_low"],
                                          "ci_high": boot["ci_high"], "n": boot["n"],
                                          "seeds_a": won_a.shape[0], "seeds_b": won_b.shape[0]}
    return out


def evaluate(suites: dict[str, list[dict]], margins: dict, compare: list, resamples: int,
             seed: int) -> tuple[list[dict], dict, dict]:
    """(records, results with the longer-answer reference, differences) of scored margins."""
    records = heldout_records(suites, margins)
    tables = margin_tables(records)
    diffs = differences({v: {s: t[2] for s, t in by_suite.items()} for v, by_suite in tables.items()},
                        compare, resamples, seed)
    return records, summarise(records, resamples, seed), diffs


def row_label(variant: str, by_suite: dict) -> str:
    """A variant's row name: the longer-answer reference by what it is; a variant with several seeds with their
    count."""
    if variant == LONGER_ANSWER:
        return "longer answer wins"
    seeds = len(next(iter(by_suite.values()))["seeds"])
    return variant if seeds == 1 else f"{variant} ({seeds})"


def suite_header(results: dict, suite: str) -> str:
    """A suite's column: its name and its number of pairs, which every model of the suite scored."""
    return f"{suite} (n={next(iter(results.values()))[suite]['n']})"


def comparison_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per variant (with its number of seeds when several), mean accuracy over seeds
    [95% CI] per suite (n in the header); the longer-answer reference last."""
    suites = list(next(iter(results.values())).keys())
    order = [v for v in results if v != LONGER_ANSWER] + [v for v in results if v == LONGER_ANSWER]
    several = any(len(results[v][suites[0]]["seeds"]) > 1 for v in order if v != LONGER_ANSWER)
    return ["variant (seeds)" if several else "variant", *(suite_header(results, s) for s in suites)], [
        [row_label(v, results[v]), *(cell(results[v][s]["accuracy"], results[v][s]["ci_low"], results[v][s]["ci_high"])
                                     for s in suites)] for v in order]


def comparison_table(results: dict) -> str:
    """The comparison as a markdown table."""
    return markdown_table(*comparison_rows(results))


def ties_line(results: dict) -> str:
    """Where verdicts tied (each counted one half): per model (variant, and seed when several) and suite."""
    found = []
    for variant, by_suite in results.items():
        for suite, r in by_suite.items():
            for seed, by_seed in r["seeds"].items():
                if by_seed["ties"]:
                    name = ("longer answer wins" if variant == LONGER_ANSWER else variant) + (
                        f" seed {seed}" if len(r["seeds"]) > 1 else "")
                    found.append(f"{name} on {suite}: {by_seed['ties']}")
    return "Ties (equal margins, each counted one half): " + ("; ".join(found) if found else "none") + "."


def seed_rows(results: dict) -> tuple[list[str], list[list[str]]] | None:
    """(header, rows): each seed's accuracy per suite, one row per (variant, seed); None when every variant has
    one seed (the comparison table says it all)."""
    variants = [v for v in results if v != LONGER_ANSWER]
    suites = list(results[variants[0]].keys())
    if all(len(results[v][suites[0]]["seeds"]) == 1 for v in variants):
        return None
    rows = [[v, seed, *("n/a" if results[v][s]["seeds"][seed]["accuracy"] is None
                        else f"{results[v][s]['seeds'][seed]['accuracy']:.3f}" for s in suites)]
            for v in variants for seed in results[v][suites[0]]["seeds"]]
    return ["variant", "seed", *suites], rows


def difference_rows(diffs: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per compared pair, difference of mean accuracies [95% CI over both arms' seeds and
    the pairs] (pairs) per suite."""
    suites = list(next(iter(diffs.values())).keys())
    first = next(iter(diffs.values()))
    return ["difference", *(f"{s} (n={first[s]['n']})" for s in suites)], [
        [name, *(cell(by_suite[s]["difference"], by_suite[s]["ci_low"], by_suite[s]["ci_high"]) for s in suites)]
        for name, by_suite in diffs.items()]


def differences_table(diffs: dict) -> str:
    """The differences as a markdown table; empty without any."""
    return markdown_table(*difference_rows(diffs)) if diffs else ""


def accuracy_by_k_plot(results: dict, path) -> None:
    """Accuracy on held-out MUSIC pairs against K, one line per variant, 95% CI as error bars (PNG)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for i, (variant, by_suite) in enumerate(results.items()):
        ks = sorted(int(s[len("music_k"):]) for s in by_suite if s.startswith("music_k"))
        rows = [by_suite[f"music_k{k}"] for k in ks]
        acc = [r["accuracy"] for r in rows]
        err = [[a - r["ci_low"] for a, r in zip(acc, rows)], [r["ci_high"] - a for a, r in zip(acc, rows)]]
        offset = 0.06 * (i - (len(results) - 1) / 2)  # side by side, so equal values stay visible
        ax.errorbar([k + offset for k in ks], acc, yerr=err, marker="o", capsize=3, label=variant,
                    color=variant_color(variant))
    ax.set(xlabel="contrasted turns K", ylabel="pairwise accuracy", ylim=(0, 1.05),
           title="Held-out MUSIC pairs (95% bootstrap CI)")
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend()
    save_png(fig, path)


def margin_histogram_plot(margins: dict, suite: str, path) -> None:
    """Histogram of reward margins (chosen - rejected) on one suite, one panel per variant (PNG)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(margins), figsize=(4 * len(margins), 3), dpi=100, squeeze=False)
    for ax, (variant, by_suite) in zip(axes[0], margins.items()):
        ax.hist(by_suite[suite], bins=12, color=variant_color(variant), alpha=0.8)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set(title=f"{variant}: {suite}", xlabel="reward(chosen) - reward(rejected)", ylabel="pairs")
    save_png(fig, path)


def reward_histogram_plot(rewards: dict, suites: list[str], path) -> None:
    """Rewards of the chosen and of the rejected conversations, one panel per variant (columns) and suite (rows),
    on shared bins: chosen filled in the variant's colour, rejected as a black outline (PNG)."""
    plt = pyplot()
    variants = list(rewards)
    fig, axes = plt.subplots(len(suites), len(variants), figsize=(4 * len(variants), 2.8 * len(suites)), dpi=100,
                             squeeze=False)
    for row, suite in zip(axes, suites):
        for ax, variant in zip(row, variants):
            chosen, rejected = rewards[variant].get(suite, ([], []))
            both = list(chosen) + list(rejected)
            bins = np.linspace(min(both), max(both), 13) if both and min(both) < max(both) else 12
            ax.hist(chosen, bins=bins, color=variant_color(variant), alpha=0.7, label="chosen")
            ax.hist(rejected, bins=bins, histtype="step", color="black", linewidth=1.2, label="rejected")
            ax.set(title=f"{variant}: {suite} (n={len(chosen)})", xlabel="reward", ylabel="conversations")
            ax.legend(fontsize=7)
    save_png(fig, path)


def training_curves_plot(curves: dict, path) -> None:
    """Loss, accuracy and margin per training step, one line per variant, or per (variant, seed) key: each seed
    in its variant's colour, the variant named once in the legend (PNG): the training curves, offline."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), dpi=100)
    for ax, key in zip(axes, ("loss", "accuracy", "margin")):
        named = set()
        for name, rows in curves.items():
            variant = name[0] if isinstance(name, tuple) else name
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            ax.plot([p[0] for p in points], [p[1] for p in points], color=variant_color(variant),
                    label=variant if variant not in named else "_nolegend_")
            named.add(variant)
        ax.set(xlabel="step", title=f"training {key}")
    axes[0].legend()
    save_png(fig, path)


PLOTS = ("accuracy_by_k.png", "margins.png", "rewards.png", "training_curves.png")  # eval's plots (dvc.yaml)


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


def write_outputs(out: Path, records: list[dict], results: dict, diffs: dict, margins: dict, rewards: dict,
                  curves: dict, trained_k: int, resamples: int) -> tuple[dict, str]:
    """records.csv, metrics.json, report.md, a self-contained report.html and the PNG plots, each written
    atomically; `margins` and `rewards` by variant and seed (the histograms pool a variant's seeds), `curves`
    by (variant, seed). Returns (the metrics, the tables as printed)."""
    seeds = seed_rows(results)
    table, diff_table = comparison_table(results), markdown_table(*difference_rows(diffs)) if diffs else ""
    seed_table = markdown_table(*seeds) if seeds else ""
    metrics = {**results, "differences": diffs}
    several = seeds is not None
    pooled_margins = {v: pooled(by_seed) for v, by_seed in margins.items()}
    pooled_rewards = {v: pooled(by_seed) for v, by_seed in rewards.items()}
    over = " (every seed's pairs)" if several else ""
    with tempfile.TemporaryDirectory() as tmp:
        plots = {name: Path(tmp) / name for name in PLOTS}
        accuracy_by_k_plot({v: r for v, r in results.items() if v != LONGER_ANSWER}, plots["accuracy_by_k.png"])
        margin_histogram_plot(pooled_margins, f"music_k{trained_k}", plots["margins.png"])
        reward_histogram_plot(pooled_rewards, ["original", f"music_k{trained_k}"], plots["rewards.png"])
        training_curves_plot(curves, plots["training_curves.png"])
        html = html_report("MUSIC reward models: held-out evaluation", [
            ("Pairwise accuracy", "text", intro(trained_k, resamples)),
            ("By variant and suite", "table", comparison_rows(results)),
            ("Ties", "text", ties_line(results)),
            *([("By training seed", "table", seeds)] if seeds else []),
            *([("Differences", "table", difference_rows(diffs))] if diffs else []),
            ("Accuracy by contrasted turns K", "png", plots["accuracy_by_k.png"]),
            (f"Reward margins on held-out MUSIC pairs at K = {trained_k}{over}", "png", plots["margins.png"]),
            (f"Rewards of chosen and rejected conversations: held-out original pairs and MUSIC pairs at "
             f"K = {trained_k}{over}", "png", plots["rewards.png"]),
            ("Training curves", "png", plots["training_curves.png"])])
        for name, src in plots.items():
            with atomic_path(out / name) as dst:
                dst.write_bytes(src.read_bytes())
    write_records(out / "records.csv", records)
    write_json(out / "metrics.json", metrics)
    tables = "\n\n".join(t for t in (table, ties_line(results), seed_table, diff_table) if t)
    write_text(out / "report.md", f"# Held-out pairwise accuracy\n\n{intro(trained_k, resamples)}\n\n{tables}\n\n"
               "![accuracy by K](accuracy_by_k.png)\n\n![margins](margins.png)\n\n![rewards](rewards.png)\n\n"
               "![training curves](training_curves.png)\n")
    write_text(out / "report.html", html)
    return metrics, tables
