"""RewardBench (Lambert et al. 2024): single-turn pairwise accuracy, scored per subset and per section.

Sources: allenai/reward-bench from the Hub (split `filtered`) or a local copy in its schema (`prompt`,
`chosen`, `rejected`, `subset`, `id`; .parquet, .jsonl or .json, a file or a folder of them); or LLMBar's
own files (princeton-nlp/LLMBar: `input`, `output_1`, `output_2`, `label`), which RewardBench includes whole
as its five `llmbar-*` subsets of Chat Hard. Rows become pairs of the one conversation schema here.

A pair counts as correct when the chosen answer gets the higher reward, and one half on a tie (equal rewards to 6
decimals, records.outcome, the rule of every suite here; upstream counts a tie as wrong: its number is ours minus
½ × ties / n, and every subset reports its ties). A section
score is the mean of its subsets' accuracies weighted by upstream's example counts (math-prm counted as
984, to weigh as much as the code subsets), over the subsets present; the overall score is the mean of
the four sections and is given only when all four are present. Intervals: a bootstrap that resamples
rows within each subset and recomputes every weighted score; differences between two variants: a paired
bootstrap over all pairs (stats.seeded_bootstrap).

Records (records.py), suite `reward_bench/<name>/<subset>`, one row per pair and model: item the row's id in the
source (`id` of RewardBench's schema; `<file>:<row>` for LLMBar's files, or a RewardBench-schema row without an id),
cluster the item (rows are independent), margin reward(chosen) - reward(rejected); `longer_answer`: the chosen
answer's characters minus the rejected one's.
"""
from collections import Counter
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..data.conversation import SchemaError, pair_id, validate_pair
from ..data.sources import read_hf, read_rows
from .records import difference, outcome
from .stats import cell, interval, markdown_table, resample_means

# allenai/reward-bench, rewardbench/constants.py (EXAMPLE_COUNTS, SUBSET_MAPPING)
EXAMPLE_COUNTS = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28,
    "mt-bench-med": 40, "mt-bench-hard": 37, "math-prm": 984, "refusals-dangerous": 100,
    "refusals-offensive": 100, "llmbar-natural": 100, "llmbar-adver-neighbor": 134,
    "llmbar-adver-GPTInst": 92, "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46,
    "xstest-should-refuse": 250, "xstest-should-respond": 154, "donotanswer": 136, "hep-cpp": 164,
    "hep-go": 164, "hep-java": 164, "hep-js": 164, "hep-python": 164, "hep-rust": 164,
}
SECTIONS = {
    "Chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"],
    "Chat Hard": ["mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"],
    "Safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"],
    "Reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"],
}
LLMBAR_FILES = {
    "LLMBar_Natural.json": "llmbar-natural", "LLMBar_Adversarial_Neighbor.json": "llmbar-adver-neighbor",
    "LLMBar_Adversarial_GPTInst.json": "llmbar-adver-GPTInst",
    "LLMBar_Adversarial_GPTOut.json": "llmbar-adver-GPTOut", "LLMBar_Adversarial_Manual.json": "llmbar-adver-manual",
}


def _exchange(prompt, answer) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def _field(raw, name, where):
    if not isinstance(raw, dict):
        raise InputError(*where, "row", f"expected an object, got {type(raw).__name__}")
    if not isinstance(raw.get(name), str):
        raise InputError(*where, name, "missing" if name not in raw else f"expected a string, got {type(raw[name]).__name__}")
    return raw[name]


def _pair(chosen: list, rejected: list, subset: str, source_id: str, where) -> dict:
    row = {"chosen": chosen, "rejected": rejected}
    try:
        validate_pair(row)
    except SchemaError as e:
        raise InputError(*where, e.field, e.reason) from None
    return {"id": pair_id(chosen, rejected), "subset": subset, "source_id": source_id, **row}


def from_reward_bench(rows, path) -> list[dict]:
    """Pairs from rows in RewardBench's schema; `rows` are (row number, raw row)."""
    pairs = []
    for row_no, raw in rows:
        if isinstance(raw, InputError):
            raise raw
        where = (path, row_no)
        prompt = _field(raw, "prompt", where)
        source_id = str(raw["id"]) if raw.get("id") is not None else f"{Path(str(path)).name}:{row_no}"
        pairs.append(_pair(_exchange(prompt, _field(raw, "chosen", where)),
                           _exchange(prompt, _field(raw, "rejected", where)), _field(raw, "subset", where), source_id,
                           where))
    return pairs


def from_llmbar(folder) -> list[dict]:
    """Pairs from LLMBar's five dataset files in `folder` (label 1: output_1 is better, 2: output_2)."""
    pairs = []
    for name, subset in LLMBAR_FILES.items():
        path = Path(folder) / name
        for row_no, raw in read_rows(path):
            where = (path, row_no)
            prompt, first, second = (_field(raw, f, where) for f in ("input", "output_1", "output_2"))
            if raw.get("label") not in (1, 2):
                raise InputError(path, row_no, "label", f"expected 1 or 2, got {raw.get('label')!r}")
            better, worse = (first, second) if raw["label"] == 1 else (second, first)
            pairs.append(_pair(_exchange(prompt, better), _exchange(prompt, worse), subset, f"{name}:{row_no}", where))
    return pairs


def load_local(path: str, fmt: str) -> list[dict]:
    """Pairs of a local copy: a RewardBench-schema file or folder of files, or LLMBar's folder."""
    if fmt == "llmbar":
        return from_llmbar(path)
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix in (".parquet", ".jsonl", ".json")) if path.is_dir() else [path]
    if not files:
        raise InputError(path, None, None, "no .parquet, .jsonl or .json files in this folder")
    return [pair for f in files for pair in from_reward_bench(read_rows(f), f)]


def load_hub(dataset: str, revision: str, split: str) -> tuple[list[dict], str]:
    """Pairs of the Hub dataset (or a local dataset folder `datasets` can load) and the commit it resolved."""
    rows, resolved = read_hf(dataset, revision, split, None, "reward_bench.hub: hf_dataset", "reward_bench.files")
    return from_reward_bench(rows, f"{dataset}@{revision}:{split}"), resolved


def scores(correct: dict[str, list[float]], resamples: int, seed: int) -> dict:
    """Per-subset accuracy (and ties: outcomes of ½), section scores weighted as upstream, the overall score; each
    with a 95% interval. `correct`: {subset: outcomes (records.outcome)}."""
    subsets = sorted(correct)
    point = {s: float(np.mean(correct[s])) for s in subsets}
    rng = np.random.default_rng(seed)
    boot = {s: resample_means(correct[s], resamples, rng) for s in subsets}

    out = {"subsets": {s: {"accuracy": round(point[s], 6), **dict(zip(("ci_low", "ci_high"), interval(boot[s]))),
                           "n": len(correct[s]), "ties": sum(x == 0.5 for x in correct[s])} for s in subsets},
           "sections": {}}
    section_boot = {}
    for section, members in SECTIONS.items():
        present = [s for s in members if s in correct]
        if not present:
            continue
        weights = np.array([EXAMPLE_COUNTS[s] for s in present], float)
        value = float(np.dot(weights, [point[s] for s in present]) / weights.sum())
        section_boot[section] = np.dot(weights, np.stack([boot[s] for s in present])) / weights.sum()
        low, high = interval(section_boot[section])
        out["sections"][section] = {"score": round(value, 6), "ci_low": low, "ci_high": high,
                                    "subsets": len(present), "of": len(members), "n": sum(len(correct[s]) for s in present),
                                    "ties": sum(out["subsets"][s]["ties"] for s in present)}
    if len(section_boot) == len(SECTIONS):
        low, high = interval(np.mean(np.stack(list(section_boot.values())), axis=0))
        out["score"] = {"score": round(float(np.mean([v["score"] for v in out["sections"].values()])), 6),
                        "ci_low": low, "ci_high": high}
    out["outside_sections"] = sorted(s for s in subsets if s not in EXAMPLE_COUNTS)
    out["ties"] = sum(r["ties"] for r in out["subsets"].values())
    return out


def length_margins(pairs: list[dict]) -> list[float]:
    """Characters of the chosen answer minus the rejected one's: "the longer answer wins", the baseline any reward
    model should beat (equal lengths are a tie)."""
    return [float(len(p["chosen"][-1]["content"]) - len(p["rejected"][-1]["content"])) for p in pairs]


def by_subset(pairs: list[dict], margins: list[float]) -> dict[str, list[float]]:
    """{subset: outcomes (records.outcome) of its pairs}."""
    out: dict[str, list[float]] = {}
    for pair, m in zip(pairs, margins):
        out.setdefault(pair["subset"], []).append(outcome(m))
    return out


def differences(margins: dict[str, list[float]], compare: list, resamples: int, seed: int) -> dict:
    """{"a-b": difference of accuracy over all pairs, paired bootstrap}, two variants on the same pairs."""
    return {f"{a}-{b}": difference(margins[a], margins[b], None, resamples, seed) for a, b in compare
            if a in margins and b in margins}


def records(pairs: list[dict], margins: dict[str, list[float]], name: str, seed: int) -> list[dict]:
    """Record rows (records.COLUMNS): each variant's margin per pair (its `seed`) and the longer answer's (seed 0)."""
    per_model = [(variant, seed, m) for variant, m in margins.items()] + [("longer_answer", 0, length_margins(pairs))]
    return [{"suite": f"reward_bench/{name}/{p['subset']}", "item": p["source_id"], "variant": variant, "seed": s,
             "margin": m} for variant, s, ms in per_model for p, m in zip(pairs, ms)]


def subset_counts(pairs: list[dict]) -> dict:
    return dict(sorted(Counter(p["subset"] for p in pairs).items()))


def table(results: dict) -> str:
    """Markdown: one row per variant, score [95% CI] per section present, then the overall score."""
    sections = [s for s in SECTIONS if any(s in r["sections"] for r in results.values())]
    first = next(iter(results.values()))
    overall = "score" in first
    header = [f"{s} ({first['sections'][s]['subsets']}/{first['sections'][s]['of']} subsets, "
              f"n={first['sections'][s]['n']})" for s in sections] + (["RewardBench score"] if overall else [])
    rows = [[variant, *(cell(c["score"], c["ci_low"], c["ci_high"])
                        for c in [r["sections"][s] for s in sections]),
             *([cell(r["score"]["score"], r["score"]["ci_low"], r["score"]["ci_high"])] if overall else []),
             str(r["ties"])]
            for variant, r in results.items()]
    return markdown_table(["variant", *header, "ties (count ½)"], rows)
