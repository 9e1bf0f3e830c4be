"""The one statistic of every suite: accuracy, the difference of two accuracies, and their intervals, from records.

A suite's records (records.py) give each reward model an `Arm`: its margins as a seeds × items table, the items
sorted, each with its cluster. A model's accuracy is the mean outcome (1 right, 0 wrong, ½ a tie) over its seeds
and items; a difference compares two models on the items both scored. Intervals are `stats.seeded_bootstrap`'s
95% percentile bootstrap: each resample draws each arm's seeds and the items with replacement, by whole cluster
(items whose records share a cluster, e.g. MT-Bench votes on one question, are drawn together). With one seed
and one item per cluster this is the plain (or paired) bootstrap over items.

Length control: where the records give each item's length difference (records.py: the characters of the answer
counted right minus the other's), each accuracy also has its `length` block: the accuracy on the items whose
chosen answer is longer, on those where it is shorter, on those of equal length (reported apart), the
length-controlled accuracy (the mean of the longer and the shorter strata, equal weights, the equal-length items
left out), and Spearman's rank correlation of the margin (mean over seeds) with the length difference. A model that
only rewards length scores 1 and 0 on the two strata (0.5 controlled) and a correlation near 1.

Every suite (held-out pairs, MT-Bench, the judge, Best-of-N, RewardBench) and the study page compute their
numbers here, under one vocabulary: `estimate`, `ci_low`, `ci_high`, `n` (items), `clusters`, `seeds`;
differences add `p_value` (two-sided, from the bootstrap) and `detectable`.
"""
from dataclasses import asdict, dataclass, field

import numpy as np

from .records import Record, is_tie, outcomes
from .stats import seeded_bootstrap, spearman_bootstrap

# (z of a two-sided 5% test) + (z of 80% power): a true difference this many standard errors from 0 is found
# (its 95% interval excludes 0) 80% of the time; the standard error is the interval's width / (2 × 1.96)
Z_ALPHA, Z_POWER = 1.96, 0.84


@dataclass(frozen=True)
class Arm:
    """One reward model (variant) on one suite: `margins[s, i]` is seed `seeds[s]`'s margin on item `items[i]`,
    `lengths[i]` the item's length difference (None when unknown)."""
    variant: str
    seeds: tuple[int, ...]
    items: tuple[str, ...]
    clusters: tuple[str, ...]
    margins: np.ndarray
    lengths: tuple = ()

    def only(self, items) -> "Arm":
        """The arm on the given items only (kept in its order)."""
        wanted = set(items)
        keep = [i for i, item in enumerate(self.items) if item in wanted]
        return Arm(self.variant, self.seeds, tuple(self.items[i] for i in keep),
                   tuple(self.clusters[i] for i in keep), self.margins[:, keep],
                   tuple(self.lengths[i] for i in keep) if self.lengths else ())

    def known_lengths(self) -> bool:
        return bool(self.items) and len(self.lengths) == len(self.items) and None not in self.lengths


def arms(records: list[Record]) -> dict[str, Arm]:
    """{variant: Arm} of one suite's records, in the records' variant order; an arm holds the items every one of
    its seeds scored."""
    cells: dict[str, dict[int, dict[str, float]]] = {}
    clusters, lengths = {}, {}
    for r in records:
        cells.setdefault(r.variant, {}).setdefault(r.seed, {})[r.item] = r.margin
        clusters[r.item] = r.cluster
        if r.length is not None:
            lengths[r.item] = r.length
    out = {}
    for variant, by_seed in cells.items():
        seeds = tuple(sorted(by_seed))
        items = tuple(sorted(set.intersection(*(set(by_seed[s]) for s in seeds))))
        out[variant] = Arm(variant, seeds, items, tuple(clusters[i] for i in items),
                           np.array([[by_seed[s][i] for i in items] for s in seeds], dtype=float).reshape(
                               len(seeds), len(items)), tuple(lengths.get(i) for i in items))
    return out


def arm_of(records: list[Record], variant: str) -> Arm:
    """One variant's arm of a suite's records; an arm with no items when the records hold none of it."""
    return arms([r for r in records if r.variant == variant]).get(variant) or Arm(
        variant, (0,), (), (), np.zeros((1, 0)))


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95% interval over seeds and items; None without items."""
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    clusters: int
    seeds: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Accuracy(Estimate):
    """A model's accuracy; `ties`: its records with a margin of 0 (over every seed); `per_seed`: each seed's
    accuracy and ties; `mean_margin`: over every seed and item; `length`: the length-controlled view (module
    docstring), None when the records give no lengths."""
    ties: int = 0
    records: int = 0
    per_seed: dict = field(default_factory=dict)
    mean_margin: float | None = None
    length: dict | None = None


@dataclass(frozen=True)
class Difference(Estimate):
    """Accuracy of model a minus model b on the items both scored; `seeds_b`: b's seeds (`seeds` are a's);
    `p_value`: two-sided, from the bootstrap; `detectable`: the smallest true difference its interval would exclude 0
    for, 80% of the time; `length_controlled`: the difference of the length-controlled accuracies (None without
    lengths)."""
    seeds_b: int = 1
    p_value: float | None = None
    detectable: float | None = None
    length_controlled: dict | None = None


def _clusters(arm: Arm) -> int:
    return len(set(arm.clusters))


def _grouping(arm: Arm):
    """The clusters to resample by; None when each item is its own cluster (the items are sorted, so drawing
    single-item clusters draws the same items as drawing items: the plain bootstrap, faster)."""
    return None if arm.clusters == arm.items else arm.clusters


def _estimate(boot: dict, arm: Arm) -> Estimate:
    return Estimate(boot["estimate"], boot["ci_low"], boot["ci_high"], boot["n"], _clusters(arm), len(arm.seeds))


def signs(arm: Arm) -> np.ndarray:
    """+1 where the chosen answer is longer, -1 where it is shorter, 0 for equal lengths."""
    return np.sign(np.asarray(arm.lengths, dtype=float)).astype(int)


def length_view(arm: Arm, resamples: int, seed: int) -> dict | None:
    """{chosen_longer, chosen_shorter, equal_length, controlled, spearman}: each an Estimate as a dict (module
    docstring); None when some item's length is unknown."""
    if not arm.known_lengths():
        return None
    sign = signs(arm)
    strata = {name: arm.only([i for i, s in zip(arm.items, sign) if s == value])
              for name, value in (("chosen_longer", 1), ("chosen_shorter", -1), ("equal_length", 0))}
    out = {name: _estimate(seeded_bootstrap(outcomes(a.margins), clusters=_grouping(a), resamples=resamples,
                                            seed=seed), a).as_dict() for name, a in strata.items()}
    controlled = seeded_bootstrap(outcomes(arm.margins), clusters=_grouping(arm), resamples=resamples, seed=seed,
                                  strata=sign)
    out["controlled"] = {**_estimate(controlled, arm).as_dict(), "n": int((sign != 0).sum())}
    rho = spearman_bootstrap(arm.margins.mean(axis=0), arm.lengths, _grouping(arm), resamples=resamples, seed=seed)
    out["spearman"] = _estimate(rho, arm).as_dict()
    return out


def accuracy(arm: Arm, resamples: int, seed: int) -> Accuracy:
    won = outcomes(arm.margins)
    boot = seeded_bootstrap(won, clusters=_grouping(arm), resamples=resamples, seed=seed)
    ties = [int(sum(is_tie(m) for m in row)) for row in arm.margins]
    n = len(arm.items)
    return Accuracy(boot["estimate"], boot["ci_low"], boot["ci_high"], n, _clusters(arm), len(arm.seeds),
                    ties=sum(ties), records=int(arm.margins.size),
                    per_seed={str(s): {"estimate": round(float(row.mean()), 6) if n else None, "ties": t}
                              for s, row, t in zip(arm.seeds, won, ties)},
                    mean_margin=round(float(arm.margins.mean()), 6) if n else None,
                    length=length_view(arm, resamples, seed))


def detectable(ci_low: float | None, ci_high: float | None) -> float | None:
    """The minimum detectable difference of an interval: (1.96 + 0.84) × its standard error, read from its width."""
    if ci_low is None:
        return None
    return round((Z_ALPHA + Z_POWER) * (ci_high - ci_low) / (2 * Z_ALPHA), 6)


def difference(a: Arm, b: Arm, resamples: int, seed: int) -> Difference | None:
    """a's accuracy minus b's on the items both scored (None when they share none), paired: each resample draws
    the same items for both arms."""
    shared = set(a.items) & set(b.items)
    if not shared:
        return None
    a, b = a.only(shared), b.only(shared)
    boot = seeded_bootstrap(outcomes(a.margins), outcomes(b.margins), clusters=_grouping(a), resamples=resamples,
                            seed=seed)
    controlled = None
    if a.known_lengths():
        sign = signs(a)
        lc = seeded_bootstrap(outcomes(a.margins), outcomes(b.margins), clusters=_grouping(a), resamples=resamples,
                              seed=seed, strata=sign)
        controlled = {**_estimate(lc, a).as_dict(), "n": int((sign != 0).sum()), "p_value": lc["p_value"],
                      "detectable": detectable(lc["ci_low"], lc["ci_high"])}
    return Difference(boot["estimate"], boot["ci_low"], boot["ci_high"], len(a.items), _clusters(a), len(a.seeds),
                      seeds_b=len(b.seeds), p_value=boot["p_value"],
                      detectable=detectable(boot["ci_low"], boot["ci_high"]), length_controlled=controlled)


@dataclass(frozen=True)
class SuiteResult:
    """Every model's accuracy on one suite, and the differences `compare` asks for ("a-b": a − b)."""
    models: dict[str, Accuracy]
    differences: dict[str, Difference]

    def as_dict(self) -> dict:
        return {"models": {v: r.as_dict() for v, r in self.models.items()},
                "differences": {name: d.as_dict() for name, d in self.differences.items()}}


def suite_result(records: list[Record], compare, resamples: int, seed: int, order=()) -> SuiteResult:
    """The accuracies and differences of one suite's records; models in `order` first (as given), then the rest
    by name."""
    by_variant = arms(records)
    names = [v for v in order if v in by_variant] + sorted(v for v in by_variant if v not in order)
    models = {v: accuracy(by_variant[v], resamples, seed) for v in names}
    diffs = {}
    for a, b in compare:
        if a in by_variant and b in by_variant:
            d = difference(by_variant[a], by_variant[b], resamples, seed)
            if d is not None:
                diffs[f"{a}-{b}"] = d
    return SuiteResult(models, diffs)


def by_suite(records: list[Record]) -> dict[str, list[Record]]:
    """{suite: its records}, suites in the order they first appear."""
    out: dict[str, list[Record]] = {}
    for r in records:
        out.setdefault(r.suite, []).append(r)
    return out
