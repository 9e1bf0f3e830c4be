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


def seeded_bootstrap(a, b=None, clusters=None, *, resamples: int, seed: int) -> dict:
    """{estimate, ci_low, ci_high, n, seeds}: the mean of `a` (minus the mean of `b`, when given) with a 95%
    percentile-bootstrap interval that includes seed variation and item variation.

    `a` and `b` are outcomes (or margins) as arrays of seeds × items (a 1-D array is one seed); both arms hold
    the same items in the same order, their seeds need not match. Each resample draws each arm's seeds with
    replacement (independently: a seed of one arm is not paired with a seed of the other) and the items with
    replacement, the same items for both arms, by whole clusters when `clusters` (one id per item) says which
    items repeat one unit (e.g. MT-Bench votes of one question); the statistic is the mean over the drawn seeds
    of the mean over the drawn items. One seed and no clusters: the plain (or paired) item bootstrap."""
    a = np.atleast_2d(np.asarray(a, dtype=float))
    b = None if b is None else np.atleast_2d(np.asarray(b, dtype=float))
    if b is not None and b.shape[1] != a.shape[1]:
        raise ValueError(f"paired samples differ in items: {a.shape[1]} and {b.shape[1]}")
    n = a.shape[1]
    if n == 0:
        return {"estimate": None, "ci_low": None, "ci_high": None, "n": 0, "seeds": a.shape[0]}
    estimate = a.mean() - (0.0 if b is None else b.mean())
    members = None
    if clusters is not None:
        ids = np.unique(np.asarray(clusters), return_inverse=True)[1]
        members = [np.flatnonzero(ids == c) for c in range(ids.max() + 1)]
    rng = np.random.default_rng(seed)
    samples = np.empty(resamples)
    for r in range(resamples):
        items = (rng.integers(0, n, n) if members is None
                 else np.concatenate([members[c] for c in rng.integers(0, len(members), len(members))]))
        value = a[rng.integers(0, a.shape[0], a.shape[0])][:, items].mean()
        if b is not None:
            value -= b[rng.integers(0, b.shape[0], b.shape[0])][:, items].mean()
        samples[r] = value
    low, high = interval(samples) if resamples > 0 else (None, None)
    return {"estimate": round(float(estimate), 6), "ci_low": low, "ci_high": high, "n": n, "seeds": a.shape[0]}
