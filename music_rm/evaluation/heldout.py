"""Pairwise accuracy of reward models on held-out pairs, with bootstrap confidence intervals.

Suites: `original` (held-out seed pairs) and `music_k<K>` for every K = 1 … simulate.turns: the held-out
MUSIC pairs that contrast cut from the test trees after K turns, so a model trained at one K is also scored
at every other K. Beside the reward models, on the same pairs: the "longer answer wins" baseline (more
assistant characters after the part both conversations share; equal lengths left out), and for each
compared pair of variants the paired-bootstrap difference of their accuracies.
"""
import logging
import tempfile
from pathlib import Path

import numpy as np

from ..core.io import atomic_path, write_json, write_text
from ..data.conversation import shared_prefix_length
from ..reward.model import load_reward_model
from .report import html_report, pyplot, save_png, variant_color
from .stats import accuracy_summary, cell, markdown_table, paired_difference

log = logging.getLogger(__name__)


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


def longer_answer_wins(pairs: list[dict], resamples: int, seed: int) -> dict:
    """How often the chosen side has the longer answers, over the pairs whose lengths differ."""
    outcomes = [float(answer_chars(p, "chosen") > answer_chars(p, "rejected")) for p in pairs
                if answer_chars(p, "chosen") != answer_chars(p, "rejected")]
    return accuracy_summary(outcomes, resamples, seed)


def differences(margins: dict, compare: list, resamples: int, seed: int) -> dict:
    """{"a-b": {suite: paired difference of accuracy}} for each compared pair of variants, on the same pairs."""
    out = {}
    for a, b in compare:
        if a in margins and b in margins:
            out[f"{a}-{b}"] = {suite: paired_difference([float(x > 0) for x in margins[a][suite]],
                                                        [float(x > 0) for x in margins[b][suite]], resamples, seed)
                               for suite in margins[a]}
    return out


def evaluate_variants(model_dirs: dict[str, str], suites: dict[str, list[dict]], batch_size: int,
                      max_length: int | None, resamples: int, seed: int, cpu_dtype: str,
                      cache: bool) -> tuple[dict, dict, dict]:
    """({variant: {suite: {accuracy, ci_low, ci_high, n, mean_margin}}}, {variant: {suite: margins}},
    {variant: {suite: (chosen rewards, rejected rewards)}})."""
    results, margins, rewards = {}, {}, {}
    for variant, model_dir in model_dirs.items():
        results[variant], margins[variant], rewards[variant] = {}, {}, {}
        log.info("scoring %s on %d suites", variant, len(suites))
        with load_reward_model(model_dir, cpu_dtype=cpu_dtype, cache=cache) as rm:  # one model at a time
            for suite, pairs in suites.items():
                chosen, rejected = rm.score_pairs(pairs, batch_size, max_length, f"{variant}: {suite}") if pairs else ([], [])
                rewards[variant][suite] = (chosen, rejected)
                m = [c - r for c, r in zip(chosen, rejected)]
                margins[variant][suite] = m
                results[variant][suite] = {**accuracy_summary([float(x > 0) for x in m], resamples, seed),
                                           "mean_margin": round(float(np.mean(m)), 6) if m else None}
    return results, margins, rewards


def comparison_rows(results: dict, baseline: dict | None = None) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per variant, accuracy [95% CI] (n) per suite; then the longer-answer baseline."""
    suites = list(next(iter(results.values())).keys())
    rows = {**results, **({"longer answer wins": baseline} if baseline else {})}
    return ["variant", *suites], [
        [variant, *(cell(by_suite[s]["accuracy"], by_suite[s]["ci_low"], by_suite[s]["ci_high"], by_suite[s]["n"])
                    for s in suites)] for variant, by_suite in rows.items()]


def comparison_table(results: dict, baseline: dict | None = None) -> str:
    """The comparison as a markdown table."""
    return markdown_table(*comparison_rows(results, baseline))


def difference_rows(diffs: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per compared pair, accuracy difference [95% paired-bootstrap CI] (n) per suite."""
    suites = list(next(iter(diffs.values())).keys())
    return ["difference", *suites], [
        [name, *(cell(by_suite[s]["difference"], by_suite[s]["ci_low"], by_suite[s]["ci_high"], by_suite[s]["n"])
                 for s in suites)] for name, by_suite in diffs.items()]


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


def training_curves_plot(curves: dict[str, list[dict]], path) -> None:
    """Loss, accuracy and margin per training step, one line per variant (PNG): the training curves, offline."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), dpi=100)
    for ax, key in zip(axes, ("loss", "accuracy", "margin")):
        for variant, rows in curves.items():
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            ax.plot([p[0] for p in points], [p[1] for p in points], label=variant, color=variant_color(variant))
        ax.set(xlabel="step", title=f"training {key}")
    axes[0].legend()
    save_png(fig, path)


PLOTS = ("accuracy_by_k.png", "margins.png", "rewards.png", "training_curves.png")  # eval's plots (dvc.yaml)


def intro(trained_k: int) -> str:
    return ("Pairwise accuracy: share of held-out pairs whose chosen conversation gets the higher reward, with a "
            "95% percentile-bootstrap interval and n. original: held-out seed pairs; music_kK: held-out MUSIC pairs "
            f"cut after K turns (the music variant was trained at K = {trained_k}, contrast.turns). Longer answer "
            "wins: the chosen side has more assistant characters after the shared part (equal lengths left out). "
            "Differences: accuracy of the first variant minus the second's on the same pairs, 95% paired-bootstrap "
            "interval.")


def write_outputs(out: Path, results: dict, margins: dict, baseline: dict, diffs: dict, curves: dict,
                  trained_k: int, rewards: dict) -> tuple[dict, str]:
    """metrics.json, report.md, a self-contained report.html and the PNG plots, each written atomically;
    returns (the metrics, the accuracy table)."""
    table, diff_table = comparison_table(results, baseline), differences_table(diffs)
    metrics = {**results, "longer_answer": baseline, "differences": diffs}
    with tempfile.TemporaryDirectory() as tmp:
        plots = {name: Path(tmp) / name for name in PLOTS}
        accuracy_by_k_plot(results, plots["accuracy_by_k.png"])
        margin_histogram_plot(margins, f"music_k{trained_k}", plots["margins.png"])
        reward_histogram_plot(rewards, ["original", f"music_k{trained_k}"], plots["rewards.png"])
        training_curves_plot(curves, plots["training_curves.png"])
        html = html_report("MUSIC reward models: held-out evaluation", [
            ("Pairwise accuracy", "text", intro(trained_k)),
            ("By variant and suite", "table", comparison_rows(results, baseline)),
            *([("Differences", "table", difference_rows(diffs))] if diffs else []),
            ("Accuracy by contrasted turns K", "png", plots["accuracy_by_k.png"]),
            (f"Reward margins on held-out MUSIC pairs at K = {trained_k}", "png", plots["margins.png"]),
            (f"Rewards of chosen and rejected conversations: held-out original pairs and MUSIC pairs at "
             f"K = {trained_k}", "png", plots["rewards.png"]),
            ("Training curves", "png", plots["training_curves.png"])])
        for name, src in plots.items():
            with atomic_path(out / name) as dst:
                dst.write_bytes(src.read_bytes())
    write_json(out / "metrics.json", metrics)
    write_text(out / "report.md", f"# Held-out pairwise accuracy\n\n{intro(trained_k)}\n\n{table}\n\n"
               + (f"{diff_table}\n\n" if diff_table else "")
               + "![accuracy by K](accuracy_by_k.png)\n\n![margins](margins.png)\n\n![rewards](rewards.png)\n\n"
                 "![training curves](training_curves.png)\n")
    write_text(out / "report.html", html)
    return metrics, table + (f"\n\n{diff_table}" if diff_table else "")
