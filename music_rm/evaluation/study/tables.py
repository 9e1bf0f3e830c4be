"""A study's numbers, from its records (estimates.py): per experiment, record file and suite, every model's accuracy
(mean over its seeds and each seed's, and its length-controlled view) and the differences eval.compare asks for,
music − volume_matched first, each with its 95% interval over seeds and items (items resampled by the records'
cluster), its bootstrap p-value and the smallest difference the suite could detect; the study's endpoints: the
primary one its design names and every other difference as the secondary family, Holm-adjusted."""
import re
from dataclasses import dataclass

from ..estimates import Difference, SuiteResult, by_suite, suite_result
from ..stats import holm
from .collect import Experiment, RecordFile

LEAD = ("music", "volume_matched")


@dataclass
class SourceTable:
    """One record file of one experiment: {suite: its result}, suites in page order."""
    experiment: Experiment
    source: RecordFile
    suites: dict[str, SuiteResult]


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


@dataclass
class Endpoint:
    """One difference the study tests: `measure` is what it compares ("length-controlled accuracy" or "accuracy";
    the plain one where the records give no lengths), `value` that measure's {estimate, ci_low, ci_high, n,
    p_value, detectable}; `holm_p` its Holm-adjusted p-value in the secondary family (None for the primary)."""
    experiment: Experiment
    source: RecordFile
    suite: str
    comparison: str
    difference: Difference
    measure: str
    value: dict
    holm_p: float | None = None


def measured(d: Difference, length_controlled: bool) -> tuple[str, dict]:
    if length_controlled and d.length_controlled is not None:
        return "length-controlled accuracy", d.length_controlled
    return "accuracy", {"estimate": d.estimate, "ci_low": d.ci_low, "ci_high": d.ci_high, "n": d.n,
                        "p_value": d.p_value, "detectable": d.detectable}


def primary_suite(design: dict, e: Experiment) -> str:
    return f"music_k{e.k}" if design["primary"]["suite"] == "trained_k" else design["primary"]["suite"]


def endpoints(exps: list[Experiment], tables: dict[tuple[str, str], SourceTable], design: dict
              ) -> tuple[Endpoint | None, list[Endpoint]]:
    """(the primary endpoint of the first experiment that has it, every other difference of every experiment:
    the secondary family, each with its Holm-adjusted p-value)."""
    p = design["primary"]
    name = "-".join(p["comparison"])
    primary, secondary = None, []
    for e in exps:
        for t in sorted((t for (en, _), t in tables.items() if en == e.name),
                        key=lambda t: (t.source.order, t.source.label)):
            for suite, s in t.suites.items():
                short = short_suite(t.source.label, suite)
                for comparison, d in s.differences.items():
                    endpoint = Endpoint(e, t.source, short, comparison, d, *measured(d, p["length_controlled"]))
                    if (primary is None and t.source.label == p["source"] and short == primary_suite(design, e)
                            and comparison == name):
                        primary = endpoint
                    else:
                        secondary.append(endpoint)
    tested = [x for x in secondary if x.value["p_value"] is not None]
    for x, adjusted in zip(tested, holm([x.value["p_value"] for x in tested])):
        x.holm_p = adjusted
    return primary, secondary


def unit(cluster: str) -> str:
    """What one record's item stands for across suites: its cluster, less a `-k<K>` suffix (the held-out MUSIC pairs
    of one tree cut after K turns are one tree)."""
    return re.sub(r"-k\d+$", "", cluster)


def shared_units(e: Experiment, tables: dict[tuple[str, str], SourceTable]) -> list[tuple[str, str, int, int, int]]:
    """(suite, suite, units both hold, units of the first, of the second) for every two suites of one experiment
    that share units (`unit`): e.g. the K cuts of the same held-out trees, MT-Bench's two turns of one question."""
    units = {}
    for (en, label), t in sorted(tables.items(), key=lambda x: (x[1].source.order, x[0][1])):
        if en != e.name:
            continue
        for suite in t.suites:
            units[f"{t.source.title}: {short_suite(label, suite)}"] = {
                unit(r.cluster) for r in t.source.records if r.suite == suite}
    names = list(units)
    return [(a, b, len(units[a] & units[b]), len(units[a]), len(units[b]))
            for i, a in enumerate(names) for b in names[i + 1:] if units[a] & units[b]]
