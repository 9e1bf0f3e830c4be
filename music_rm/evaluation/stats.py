"""Percentile-bootstrap intervals: over seeds and clusters of items (plain and paired; every accuracy and difference,
through estimates.py), and of the means of strata (RewardBench's weighted section scores)."""
import numpy as np


def resample_means(values, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` bootstrap resamples of `values` (each the size of `values`, drawn with replacement)."""
    values = np.asarray(values, dtype=float)
    return values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)


def interval(samples, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap samples, rounded to 6 places."""
    low, high = np.quantile(samples, [(1 - level) / 2, 1 - (1 - level) / 2])
    return round(float(low), 6), round(float(high), 6)


def draws(n: int, clusters, rng: np.random.Generator):
    """A function giving one bootstrap resample of item indices of `n` items: items drawn with replacement, or whole
    clusters (one id per item) drawn with replacement."""
    if clusters is None:
        return lambda: rng.integers(0, n, n)
    ids = np.unique(np.asarray(clusters), return_inverse=True)[1]
    members = [np.flatnonzero(ids == c) for c in range(ids.max() + 1)]
    return lambda: np.concatenate([members[c] for c in rng.integers(0, len(members), len(members))])


def strata_mean(per_item: np.ndarray, strata: np.ndarray, levels) -> float:
    """The mean over the strata `levels` of each stratum's mean; nan when a stratum has no item."""
    return float(np.mean([per_item[strata == s].mean() if (strata == s).any() else np.nan for s in levels]))


def seeded_bootstrap(a, b=None, clusters=None, *, resamples: int, seed: int, strata=None,
                     keep_samples: bool = False) -> dict:
    """{estimate, ci_low, ci_high, n, seeds, p_value}: the mean of `a` (minus the mean of `b`, when given) with a
    95% percentile-bootstrap interval that includes seed variation and item variation.

    `a` and `b` are outcomes (or margins) as arrays of seeds × items (a 1-D array is one seed); both arms hold
    the same items in the same order, their seeds need not match. Each resample draws each arm's seeds with
    replacement (independently: a seed of one arm is not paired with a seed of the other) and the items with
    replacement, the same items for both arms, by whole clusters when `clusters` (one id per item) says which
    items repeat one unit (e.g. MT-Bench votes of one question); the statistic is the mean over the drawn seeds
    of the mean over the drawn items. One seed and no clusters: the plain (or paired) item bootstrap.

    With `strata` (one label per item, 0 for none), the statistic is the mean of the strata's means instead
    (`strata_mean`: e.g. the chosen-longer and chosen-shorter pairs weighed equally); resamples in which a
    stratum has no item are left out, and with fewer than two strata there is no estimate (one stratum alone
    controls for nothing). `p_value`: two-sided, from the resamples (twice the smaller share on either
    side of 0, at most 1), for a difference; `samples` too with `keep_samples`."""
    a = np.atleast_2d(np.asarray(a, dtype=float))
    b = None if b is None else np.atleast_2d(np.asarray(b, dtype=float))
    if b is not None and b.shape[1] != a.shape[1]:
        raise ValueError(f"paired samples differ in items: {a.shape[1]} and {b.shape[1]}")
    n = a.shape[1]
    labels = None if strata is None else np.asarray(strata)
    levels = None if labels is None else np.unique(labels[labels != 0])
    if n == 0 or (levels is not None and levels.size < 2):
        return {"estimate": None, "ci_low": None, "ci_high": None, "n": 0, "seeds": a.shape[0], "p_value": None}

    def statistic(x, items):
        if labels is None:
            return x[:, items].mean()
        return strata_mean(x[:, items].mean(axis=0), labels[items], levels)

    every = np.arange(n)
    estimate = statistic(a, every) - (0.0 if b is None else statistic(b, every))
    rng = np.random.default_rng(seed)
    draw = draws(n, clusters, rng)
    samples = np.empty(resamples)
    for r in range(resamples):
        items = draw()
        value = statistic(a[rng.integers(0, a.shape[0], a.shape[0])], items)
        if b is not None:
            value -= statistic(b[rng.integers(0, b.shape[0], b.shape[0])], items)
        samples[r] = value
    samples = samples[~np.isnan(samples)]
    low, high = interval(samples) if samples.size else (None, None)
    p_value = (None if b is None or not samples.size else
               round(min(1.0, 2 * min(float(np.mean(samples <= 0)), float(np.mean(samples >= 0)))), 6))
    out = {"estimate": round(float(estimate), 6), "ci_low": low, "ci_high": high, "n": n, "seeds": a.shape[0],
           "p_value": p_value}
    return {**out, "samples": samples} if keep_samples else out


def spearman(x, y) -> float:
    """The rank correlation of x and y (0 when either is constant)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(spearmanr(x, y).statistic)


def spearman_bootstrap(x, y, clusters=None, *, resamples: int, seed: int) -> dict:
    """{estimate, ci_low, ci_high, n}: Spearman's rank correlation of x and y with a 95% percentile-bootstrap
    interval, items (or whole clusters) resampled."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 3:
        return {"estimate": None, "ci_low": None, "ci_high": None, "n": int(x.size)}
    draw = draws(x.size, clusters, np.random.default_rng(seed))
    samples = np.array([spearman(x[items], y[items]) for items in (draw() for _ in range(resamples))])
    low, high = interval(samples) if resamples > 0 else (None, None)
    return {"estimate": round(spearman(x, y), 6), "ci_low": low, "ci_high": high, "n": int(x.size)}


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the i-th smallest p times (m - i + 1), made
    non-decreasing, at most 1. Rejecting where the adjusted p is at most α keeps the family-wise error at α under
    any dependence between the tests (Holm 1979)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = round(running, 6)
    return adjusted
