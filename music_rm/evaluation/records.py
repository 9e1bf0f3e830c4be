"""Per-item records: every suite writes, for each item it scored and each reward model, the item's id, the
cluster it belongs to and the reward margin, so a reader can recompute any number a page reports.

A record file is CSV with the columns in COLUMNS, one row per (item, reward model), sorted. `margin` is the
reward of the answer the suite counts as right minus the other's, rounded to 6 decimals, and the verdict is read
from the rounded margin (`outcome`): the numbers a stage reports and the ones recomputed from its records agree.
A tie (equal margins to 6 decimals, e.g. two conversations that truncation made identical) counts one half, in
every suite.
"""
import csv
import io

import numpy as np

from ..core.io import write_text
from .stats import seeded_bootstrap

COLUMNS = ("suite", "item", "cluster", "variant", "seed", "margin")
DECIMALS = 6


def rounded(margin: float) -> float:
    """A margin as records store it and as verdicts read it."""
    return round(float(margin), DECIMALS) + 0.0  # + 0.0: -0.0 becomes 0.0


def outcome(margin: float) -> float:
    """1 when the margin is positive, 0 when negative, 0.5 for a tie (read on the rounded margin)."""
    m = rounded(margin)
    return 1.0 if m > 0 else 0.0 if m < 0 else 0.5


def is_tie(margin: float) -> bool:
    return rounded(margin) == 0.0


def outcomes(margins) -> np.ndarray:
    """`outcome` of each margin of an array (any shape)."""
    return np.vectorize(outcome, otypes=[float])(np.asarray(margins, dtype=float))


def records_csv(rows) -> str:
    """CSV text of record dicts (keys: COLUMNS; `cluster` defaults to the item), sorted by every column."""
    table = sorted((str(r["suite"]), str(r["item"]), str(r.get("cluster", r["item"])), str(r["variant"]),
                    int(r["seed"]), rounded(r["margin"])) for r in rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows((*row[:5], f"{row[5]:.{DECIMALS}f}") for row in table)
    return buffer.getvalue()


def write_records(path, rows) -> None:
    write_text(path, records_csv(rows))


def read_records(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{**row, "seed": int(row["seed"]), "margin": float(row["margin"])} for row in csv.DictReader(f)]


def accuracy(margins, clusters, resamples: int, seed: int) -> dict:
    """{accuracy, ci_low, ci_high, n, ties}: the mean outcome of the margins (one per item, or seeds × items) under
    the tie rule, with stats.seeded_bootstrap's 95% interval (items resampled by whole cluster when `clusters`
    gives one id per item, else None); `clusters` is added when given (how many distinct ones)."""
    m = np.asarray(margins, dtype=float)
    r = seeded_bootstrap(outcomes(m), clusters=clusters, resamples=resamples, seed=seed)
    out = {"accuracy": r["estimate"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": r["n"],
           "ties": int(sum(is_tie(x) for x in m.ravel()))}
    return out if clusters is None else {**out, "clusters": len(set(clusters))}


def difference(margins_a, margins_b, clusters, resamples: int, seed: int) -> dict:
    """{difference, ci_low, ci_high, n, ties_a, ties_b}: accuracy of a minus accuracy of b on the same items (tie
    rule on both), with stats.seeded_bootstrap's paired 95% interval (by cluster when `clusters` is given)."""
    a, b = np.asarray(margins_a, dtype=float), np.asarray(margins_b, dtype=float)
    r = seeded_bootstrap(outcomes(a), outcomes(b), clusters=clusters, resamples=resamples, seed=seed)
    out = {"difference": r["estimate"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": r["n"],
           "ties_a": int(sum(is_tie(x) for x in a.ravel())), "ties_b": int(sum(is_tie(x) for x in b.ravel()))}
    return out if clusters is None else {**out, "clusters": len(set(clusters))}
