"""The statistics every suite reports: percentile-bootstrap intervals (plain and paired) and one table cell."""
import numpy as np


def resample_means(values, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` bootstrap resamples of `values` (each the size of `values`, drawn with replacement)."""
    values = np.asarray(values, dtype=float)
    return values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)


def interval(samples, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap samples, rounded to 6 places."""
    low, high = np.quantile(samples, [(1 - level) / 2, 1 - (1 - level) / 2])
    return round(float(low), 6), round(float(high), 6)


def bootstrap_ci(values, resamples: int, seed: int) -> tuple[float | None, float | None]:
    """95% percentile-bootstrap interval of the mean of `values`; (None, None) when there are none."""
    if len(values) == 0 or resamples < 1:
        return None, None
    return interval(resample_means(values, resamples, np.random.default_rng(seed)))


def accuracy_summary(correct, resamples: int, seed: int) -> dict:
    """{accuracy, ci_low, ci_high, n} of a list of 0/1 outcomes."""
    if len(correct) == 0:
        return {"accuracy": None, "ci_low": None, "ci_high": None, "n": 0}
    low, high = bootstrap_ci(correct, resamples, seed)
    return {"accuracy": round(float(np.mean(correct)), 6), "ci_low": low, "ci_high": high, "n": len(correct)}


def paired_difference(a, b, resamples: int, seed: int) -> dict:
    """{difference, ci_low, ci_high, n}: mean(a) - mean(b) over the same items (a[i] and b[i] are two
    measurements of item i), with a 95% bootstrap interval that resamples items, keeping each pair together."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in size: {a.size} and {b.size}")
    if a.size == 0:
        return {"difference": None, "ci_low": None, "ci_high": None, "n": 0}
    low, high = bootstrap_ci(a - b, resamples, seed)
    return {"difference": round(float(np.mean(a - b)), 6), "ci_low": low, "ci_high": high, "n": int(a.size)}


def cell(value: float | None, low: float | None, high: float | None, note=None) -> str:
    """A table cell: `0.917 [0.75, 1.00] (note)`, or `n/a (note)` without a value."""
    suffix = "" if note is None else f" ({note})"
    return "n/a" + suffix if value is None else f"{value:.3f} [{low:.2f}, {high:.2f}]{suffix}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
