"""The evaluation's plots as PNG files that are byte-identical from run to run: eval's (accuracy by K, margins,
rewards, training curves) and a study page's (accuracy by K, differences), one colour per variant everywhere."""
import hashlib

import numpy as np

# One colour per reward-model variant, the same in every plot and report (matplotlib's tab10): the paper's three
# fixed, any other variant one of the rest, picked by a hash of its name.
VARIANT_COLORS = {"baseline": "#1f77b4", "music": "#ff7f0e", "volume_matched": "#2ca02c"}
OTHER_COLORS = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def variant_color(variant: str) -> str:
    """The colour of `variant` in every plot; "music, trained at K=2" is music's."""
    name = variant.split(",")[0].strip()
    if name in VARIANT_COLORS:
        return VARIANT_COLORS[name]
    return OTHER_COLORS[int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(OTHER_COLORS)]


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path) -> None:
    """Save and close a figure; no software or date metadata, so the same plot gives the same bytes."""
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    pyplot().close(fig)


def trained_k_style(label: str) -> dict:
    """A study's "music, trained at K=2" row: a marker and line style per trained K, in music's colour."""
    if "K=" not in label:
        return {}
    k = int(label.rsplit("K=", 1)[1])
    return {"marker": "osD^v"[k % 5], "linestyle": ("-", "--", ":", "-.")[k % 4]}


def accuracy_by_k(rows: dict, path, xlabel: str, title: str, size=(5, 3.2), spread=0.06, legend=None) -> None:
    """Accuracy on held-out MUSIC pairs against K, one line per row ({label: {suite: estimates.Accuracy}}), the 95%
    interval as error bars; rows side by side (`spread` apart) so that equal values stay visible."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size, dpi=100)
    for i, (label, by_suite) in enumerate(rows.items()):
        ks = sorted(int(s[len("music_k"):]) for s in by_suite if s.startswith("music_k"))
        acc = [by_suite[f"music_k{k}"].estimate for k in ks]
        err = [[a - by_suite[f"music_k{k}"].ci_low for a, k in zip(acc, ks)],
               [by_suite[f"music_k{k}"].ci_high - a for a, k in zip(acc, ks)]]
        offset = spread * (i - (len(rows) - 1) / 2)
        ax.errorbar([k + offset for k in ks], acc, yerr=err, capsize=3, label=label, color=variant_color(label),
                    **{"marker": "o", **trained_k_style(label)})
    ax.set(xlabel=xlabel, ylabel="pairwise accuracy", ylim=(0, 1.05), title=title)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(**(legend or {}))
    save_png(fig, path)


def margin_histogram(margins: dict, suite: str, path) -> None:
    """Histogram of reward margins (chosen - rejected) on one suite, one panel per variant (PNG)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(margins), figsize=(4 * len(margins), 3), dpi=100, squeeze=False)
    for ax, (variant, by_suite) in zip(axes[0], margins.items()):
        ax.hist(by_suite[suite], bins=12, color=variant_color(variant), alpha=0.8)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set(title=f"{variant}: {suite}", xlabel="reward(chosen) - reward(rejected)", ylabel="pairs")
    save_png(fig, path)


def reward_histogram(rewards: dict, suites: list[str], path) -> None:
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


def training_curves(curves: dict, path) -> None:
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


def differences(panels: dict, path) -> None:
    """A study's differences: one panel per comparison ({"a-b": [(trained K, {suite: estimates.Difference}), …]},
    one entry per experiment), each difference per suite and trained K with its 95% interval over seeds and items
    (one experiment: in the colour of the comparison's second variant)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6 * max(1, len(panels)), 3.6), dpi=100, squeeze=False)
    for ax, (name, by_k) in zip(axes[0], panels.items()):
        for i, (k, by_suite) in enumerate(by_k):
            keys = list(by_suite)
            d = list(by_suite.values())
            x = [j + 0.12 * (i - (len(by_k) - 1) / 2) for j in range(len(keys))]
            ax.errorbar(x, [r.estimate for r in d], yerr=[[r.estimate - r.ci_low for r in d],
                                                         [r.ci_high - r.estimate for r in d]],
                        marker="osD^v"[k % 5], capsize=3, linestyle="none", label=f"trained at K={k}",
                        color=variant_color(name.split("-")[1]) if len(by_k) == 1 else None)
            ax.set_xticks(range(len(keys)), keys)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(ylabel="accuracy difference", title=f"{name.replace('-', ' − ')} (95% interval over seeds and items)")
        ax.legend(fontsize=7)
    save_png(fig, path)
