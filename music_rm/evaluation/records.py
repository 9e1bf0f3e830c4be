"""Per-item records: every suite writes, for each item it scored and each reward model, the item's id, the
cluster it belongs to and the reward margin, so a reader can recompute any number a page reports.

A record file is CSV with the columns in COLUMNS, one row per (item, reward model), sorted. `margin` is the
reward of the answer the suite counts as right minus the other's, rounded to 6 decimals, and the verdict is read
from the rounded margin (`outcome`): the numbers a stage reports and the ones recomputed from its records agree.
`length` is the length difference the item was judged on, in characters: the assistant text the suite counts as
right minus the other's, after the part both conversations share (empty when a suite has no such text). A record
file written before the column existed gets it from its `longer_answer` reference, whose margin is that length.
A tie (equal margins to 6 decimals, e.g. two conversations that truncation made identical) counts one half, in
every suite. Every statistic is computed from records by `estimates.py`.
"""
import csv
import io
from dataclasses import dataclass

import numpy as np

from ..core.io import write_text

COLUMNS = ("suite", "item", "cluster", "variant", "seed", "margin", "length")
LONGER_ANSWER = "longer_answer"  # the reference every suite with answers writes: its margin is the length
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
    margins = np.asarray(margins, dtype=float)
    return np.vectorize(outcome, otypes=[float])(margins) if margins.size else margins


@dataclass(frozen=True, order=True)
class Record:
    """One reward model's margin on one item of one suite (the field order is the file's sort order)."""
    suite: str
    item: str
    cluster: str
    variant: str
    seed: int
    margin: float
    length: int | None = None

    @classmethod
    def of(cls, suite, item, variant, seed, margin, cluster=None, length=None) -> "Record":
        """A record as files store it: ids as text, the cluster defaulting to the item, the margin rounded."""
        return cls(str(suite), str(item), str(item if cluster is None else cluster), str(variant), int(seed),
                   rounded(margin), None if length in (None, "") else int(float(length)))


def records_csv(records) -> str:
    """CSV text of records, sorted by every column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows((r.suite, r.item, r.cluster, r.variant, r.seed, f"{r.margin:.{DECIMALS}f}",
                      "" if r.length is None else r.length) for r in sorted(records, key=_order))
    return buffer.getvalue()


def _order(r: Record) -> tuple:
    return r.suite, r.item, r.cluster, r.variant, r.seed, r.margin


def with_lengths(records: list[Record]) -> list[Record]:
    """Records whose length is unknown get their item's: another record's of the item, else the longer-answer
    reference's margin (record files written before the length column)."""
    known = {}
    for r in records:
        if r.length is not None:
            known[(r.suite, r.item)] = r.length
    for r in records:
        if r.variant == LONGER_ANSWER:
            known.setdefault((r.suite, r.item), int(r.margin))
    return [r if r.length is not None or (r.suite, r.item) not in known else
            Record(r.suite, r.item, r.cluster, r.variant, r.seed, r.margin, known[(r.suite, r.item)]) for r in records]


def write_records(path, records) -> None:
    """A record file, written atomically."""
    write_text(path, records_csv(records))


def from_row(row: dict) -> Record:
    """The record of a CSV row (extra columns, e.g. a study's `experiment`, are not read)."""
    return Record.of(row["suite"], row["item"], row["variant"], row["seed"], row["margin"], row["cluster"],
                     row.get("length"))


def parse_records(text: str) -> list[Record]:
    """Records of a record file's text (lengths filled in from the longer-answer reference where the file has none)."""
    return with_lengths([from_row(row) for row in csv.DictReader(io.StringIO(text))])


def read_records(path) -> list[Record]:
    """The records of a record file (a suite's records.csv)."""
    with open(path, newline="", encoding="utf-8") as f:
        return parse_records(f.read())
