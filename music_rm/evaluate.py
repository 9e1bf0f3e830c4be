"""Pairwise accuracy of reward models on held-out pairs, with bootstrap confidence intervals.

Suites: `original` (held-out seed pairs), `music` (held-out MUSIC pairs at the trained K) and `music_k<K>`
for every K = 1 … simulate.turns, cut from the held-out trees, so a model trained at one K is also
scored at every other K.
"""
import numpy as np

from .contrast import pairs_from_trees, simulated_turns
from .reward import load_reward_model, score


def bootstrap_ci(values, resamples: int, seed: int, level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of the mean of `values`."""
    values = np.asarray(values, dtype=float)
    if values.size == 0 or resamples < 1:
        return None, None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return round(float(low), 6), round(float(high), 6)


def accuracy_summary(correct, resamples: int, seed: int) -> dict:
    """{accuracy, ci_low, ci_high, n} of a list of 0/1 outcomes."""
    if len(correct) == 0:
        return {"accuracy": None, "ci_low": None, "ci_high": None, "n": 0}
    low, high = bootstrap_ci(correct, resamples, seed)
    return {"accuracy": round(float(np.mean(correct)), 6), "ci_low": low, "ci_high": high, "n": len(correct)}


def music_suites(test_trees: list[dict]) -> dict[str, list[dict]]:
    """Held-out MUSIC pairs at every K the trees allow."""
    if not test_trees:
        return {}
    turns = min(simulated_turns(t) for t in test_trees)
    return {f"music_k{k}": pairs_from_trees(test_trees, k) for k in range(1, turns + 1)}


def pair_margins(model, tokenizer, pairs: list[dict], batch_size: int, desc: str) -> list[float]:
    """score(chosen) - score(rejected) per pair."""
    if not pairs:
        return []
    scores = score(model, tokenizer, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs], batch_size, desc)
    return [c - r for c, r in zip(scores[: len(pairs)], scores[len(pairs):])]


def evaluate_variants(model_dirs: dict[str, str], suites: dict[str, list[dict]], batch_size: int,
                      resamples: int = 1000, seed: int = 0) -> tuple[dict, dict]:
    """({variant: {suite: {accuracy, ci_low, ci_high, n, mean_margin}}}, {variant: {suite: margins}})."""
    results, margins = {}, {}
    for variant, model_dir in model_dirs.items():
        model, tokenizer = load_reward_model(model_dir)
        results[variant], margins[variant] = {}, {}
        for suite, pairs in suites.items():
            m = pair_margins(model, tokenizer, pairs, batch_size, f"{variant}: {suite}")
            margins[variant][suite] = m
            results[variant][suite] = {**accuracy_summary([float(x > 0) for x in m], resamples, seed),
                                       "mean_margin": round(float(np.mean(m)), 6) if m else None}
    return results, margins


def _cell(r: dict) -> str:
    if r["accuracy"] is None:
        return "n/a (0)"
    return f"{r['accuracy']:.3f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] ({r['n']})"


def comparison_table(results: dict) -> str:
    """Markdown: one row per variant, accuracy [95% CI] (n) per suite."""
    suites = list(next(iter(results.values())).keys())
    lines = ["| variant | " + " | ".join(suites) + " |", "|" + "---|" * (len(suites) + 1)]
    lines += [f"| {variant} | " + " | ".join(_cell(by_suite[s]) for s in suites) + " |"
              for variant, by_suite in results.items()]
    return "\n".join(lines)


def accuracy_by_k_plot(results: dict, path) -> None:
    """Accuracy on held-out MUSIC pairs against K, one line per variant, 95% CI as error bars (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for i, (variant, by_suite) in enumerate(results.items()):
        ks = sorted(int(s[len("music_k"):]) for s in by_suite if s.startswith("music_k"))
        rows = [by_suite[f"music_k{k}"] for k in ks]
        acc = [r["accuracy"] for r in rows]
        err = [[a - r["ci_low"] for a, r in zip(acc, rows)], [r["ci_high"] - a for a, r in zip(acc, rows)]]
        offset = 0.06 * (i - (len(results) - 1) / 2)  # side by side, so equal values stay visible
        ax.errorbar([k + offset for k in ks], acc, yerr=err, marker="o", capsize=3, label=variant)
    ax.set(xlabel="contrasted turns K", ylabel="pairwise accuracy", ylim=(0, 1.05),
           title="Held-out MUSIC pairs (95% bootstrap CI)")
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def margin_histogram_plot(margins: dict, suite: str, path) -> None:
    """Histogram of reward margins (chosen - rejected) on one suite, one panel per variant (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(margins), figsize=(4 * len(margins), 3), dpi=100, squeeze=False)
    for ax, (variant, by_suite) in zip(axes[0], margins.items()):
        ax.hist(by_suite[suite], bins=12, color="tab:blue", alpha=0.8)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set(title=f"{variant}: {suite}", xlabel="reward(chosen) - reward(rejected)", ylabel="pairs")
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
