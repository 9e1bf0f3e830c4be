"""A study's numbers, from its records (estimates.py): per experiment, record file and suite, every model's accuracy
(mean over its seeds and each seed's) and the differences eval.compare asks for, music − volume_matched first, each
with its 95% interval over seeds and items (items resampled by the records' cluster) and, for differences, the
smallest difference the suite could detect."""
import re
from dataclasses import dataclass

from ..estimates import Difference, SuiteResult, by_suite, suite_result
from .collect import Experiment, RecordFile

LEAD = ("music", "volume_matched")


@dataclass
class SourceTable:
    """One record file of one experiment: {suite: its result}, suites in page order."""
    experiment: Experiment
    source: RecordFile
    suites: dict[str, SuiteResult]


@dataclass
class LeadRow:
    """music − volume_matched on one suite of one experiment."""
    experiment: Experiment
    source: RecordFile
    suite: str
    difference: Difference


def comparisons(params: dict) -> list[tuple[str, str]]:
    """eval.compare's pairs, music − volume_matched first."""
    pairs = [tuple(p) for p in params.get("eval", {}).get("compare", [])]
    return sorted(pairs, key=lambda p: p != LEAD)


def suite_order(suite: str):
    """original first, then music_k1, music_k2, …, then the rest by name."""
    m = re.fullmatch(r"music_k(\d+)", suite)
    return (suite != "original", 0 if m is None else 1, int(m.group(1)) if m else 0, suite)


def short_suite(label: str, suite: str) -> str:
    """A suite's name without its record file's label (the producers name suites `mt_bench/<source>/turn1`)."""
    if suite == label:
        return "all"
    return suite[len(label) + 1:] if suite.startswith(label + "/") else suite


def study_tables(exps: list[Experiment]) -> dict[tuple[str, str], SourceTable]:
    """{(experiment name, record file label): SourceTable}."""
    tables = {}
    for e in exps:
        resamples = e.params.get("eval", {}).get("bootstrap_resamples", 1000)
        seed = e.params.get("eval", {}).get("seed", 0)
        for label, source in e.sources.items():
            suites = by_suite(source.records)
            tables[(e.name, label)] = SourceTable(e, source, {
                s: suite_result(suites[s], comparisons(e.params), resamples, seed, order=e.trained())
                for s in sorted(suites, key=suite_order)})
    return tables


def lead_rows(exps: list[Experiment], tables: dict[tuple[str, str], SourceTable]) -> list[LeadRow]:
    """music − volume_matched in every suite of every experiment, in page order."""
    rows = []
    name = "-".join(LEAD)
    for e in exps:
        for t in sorted((t for (en, _), t in tables.items() if en == e.name),
                        key=lambda t: (t.source.order, t.source.label)):
            for suite, s in t.suites.items():
                if name in s.differences:
                    rows.append(LeadRow(e, t.source, short_suite(t.source.label, suite), s.differences[name]))
    return rows


def accuracy_rows(exps: list[Experiment], tables: dict[tuple[str, str], SourceTable]) -> dict:
    """{"<variant>, trained at K=<k>": {held-out suite: Accuracy}} of the trained models, for plots.accuracy_by_k."""
    rows = {}
    for e in exps:
        suites = tables[(e.name, "held_out")].suites if (e.name, "held_out") in tables else {}
        for v in e.trained():
            entry = {s: r.models[v] for s, r in suites.items() if v in r.models}
            if entry:
                rows[f"{v}, trained at K={e.k}"] = entry
    return rows


def difference_panels(exps: list[Experiment], tables: dict[tuple[str, str], SourceTable]) -> dict:
    """{"a-b": [(trained K, {held-out suite: Difference}) per experiment]}, music − volume_matched first, for
    plots.differences."""
    held = [(e, tables[(e.name, "held_out")].suites) for e in exps if (e.name, "held_out") in tables]
    names = sorted({n for _, suites in held for s in suites.values() for n in s.differences},
                   key=lambda n: n != "-".join(LEAD))
    return {name: [(e.k, {short_suite("held_out", s): r.differences[name] for s, r in suites.items()
                          if name in r.differences}) for e, suites in held] for name in names}
