"""A study's results page from its DVC experiments, computed from the per-item records the suites wrote.

A study is a set of DVC experiments named `<study>-…`, each with one contrast.turns (K) and every training seed
of every variant (models/rm/<variant>/seed-<seed>). `experiments` reads from git, at each experiment's commit, its
params, dvc.lock, summaries, the record files (records.py: one margin per item, reward model and seed) and each
model's "pairs seen"; the stages' environment.json files come from the DVC cache by the md5 dvc.lock gives.
`study_tables` turns the records into every number the page shows: per suite and model the accuracy (ties count
one half, `records.outcome`), its mean over seeds and each seed's value, and the differences between variants,
each with `stats.seeded_bootstrap`'s 95% interval over seeds and items (items resampled by the records' cluster
column), and the smallest difference each suite could detect. The same experiments give the same bytes.
"""
import json
import re

import numpy as np
import yaml

from ..method.contrast import tree_relatedness
from .records import COLUMNS, is_tie, outcome, records_csv
from .report import pyplot, save_png, variant_color
from .stats import cell, markdown_table, seeded_bootstrap

METRICS = {"eval": "data/eval/metrics.json", "fetch": "data/fetch/summary.json",
           "simulate": "data/simulate/summary.json", "contrast": "data/contrast/summary.json"}
SUMMARIES = {key: path for key, path in METRICS.items() if key != "eval"}
# record files: (path pattern, the source's label, its title on the page), in page order
SOURCES = ((re.compile(r"data/eval/records\.csv"), "held_out", "Held-out pairs"),
           (re.compile(r"data/eval/mt_bench/([^/]+)/records\.csv"), "mt_bench/{}", "MT-Bench human votes ({})"),
           (re.compile(r"data/eval/reward_bench/([^/]+)/records\.csv"), "reward_bench/{}", "RewardBench ({})"),
           (re.compile(r"data/eval/judge/([^/]+)/records\.csv"), "judge/{}", "LLM judge's verdicts ({})"),
           (re.compile(r"data/eval/best_of_n/([^/]+)/records\.csv"), "best_of_n/{}", "Best-of-N ({})"))
LEAD = ("music", "volume_matched")
# (z of a two-sided 5% test) + (z of 80% power): a true difference this many standard errors from 0 is found
# (its 95% interval excludes 0) 80% of the time; the standard error is the interval's width / (2 × 1.96)
Z_ALPHA, Z_POWER = 1.96, 0.84
RECORD_COLUMNS = ("experiment", "source", *COLUMNS)
# contrast.min_relatedness values the page counts the train trees for (the harder-contrast option)
RELATEDNESS_STEPS = (0.1, 0.25, 0.5)
TREES = "data/simulate/trees.jsonl"


def source_of(path: str) -> tuple[str, str, int] | None:
    """(label, title, page order) of a record file's path; None for any other file."""
    for order, (pattern, label, title) in enumerate(SOURCES):
        m = pattern.fullmatch(path)
        if m:
            return label.format(*m.groups()), title.format(*m.groups()), order
    return None


def experiments(show: list, prefix: str, read, files, cached=lambda md5: None) -> list[dict]:
    """[{name, rev, k, params, lock, summaries, records: {source: rows}, pairs_seen, environments, trees}] of the finished
    experiments named `prefix`…, in K order, then name.

    `show` is what `dvc exp show --json` prints: it names the experiments and their commits. `read(rev, path)`
    gives a file's text at a commit (None when it is not there), `files(rev)` the paths git holds at a commit,
    `cached(md5)` a DVC-cached file's text (None when the cache lacks it)."""
    found = {}

    def walk(node):
        if isinstance(node, dict):
            data = node.get("data")
            name = node.get("name")
            # a running or queued experiment has no commit yet ("workspace" or a stash): left out
            if (isinstance(data, dict) and re.fullmatch(r"[0-9a-f]{40}", str(data.get("rev"))) and name
                    and name.startswith(prefix)):
                found[name] = data["rev"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(show)
    exps = []
    for name, rev in found.items():
        params = yaml.safe_load(read(rev, "params.yaml"))
        lock = yaml.safe_load(read(rev, "dvc.lock") or "{}") or {}
        records = {}
        for path in sorted(files(rev)):
            source = source_of(path)
            if source:
                records[source[0]] = {"title": source[1], "order": source[2], "path": path,
                                      "rows": read_records_text(read(rev, path))}
        seeds = sorted({r["seed"] for r in records.get("held_out", {}).get("rows", [])}
                       | set(params.get("train", {}).get("seeds", [])))
        pairs_seen = {}
        for variant in sorted(params.get("train", {}).get("variants", {})):
            for seed in seeds:
                text = read(rev, f"data/train/{variant}/seed-{seed}/metrics.json")
                pairs_seen[(variant, seed)] = json.loads(text).get("pairs_seen") if text else None
        environments, trees = {}, None
        for stage, entry in sorted(lock.get("stages", {}).items()):
            for out in entry.get("outs", []):
                if out["path"].endswith("environment.json"):
                    text = cached(out.get("md5", ""))
                    environments[out["path"]] = json.loads(text) if text else None
                elif out["path"] == TREES:
                    text = cached(out.get("md5", ""))
                    trees = [json.loads(line) for line in text.splitlines() if line.strip()] if text else None
        summaries = {key: json.loads(read(rev, path) or "{}") for key, path in SUMMARIES.items()}
        exps.append({"name": name, "rev": rev, "k": params["contrast"]["turns"], "params": params, "lock": lock,
                     "summaries": summaries, "records": records, "pairs_seen": pairs_seen,
                     "environments": environments, "trees": trees})
    return sorted(exps, key=lambda e: (e["k"], e["name"]))


def read_records_text(text: str) -> list[dict]:
    import csv
    import io
    return [{**row, "seed": int(row["seed"]), "margin": float(row["margin"])}
            for row in csv.DictReader(io.StringIO(text))]


def arm(rows: list[dict], variant: str) -> tuple[list[int], dict[str, list[float]]]:
    """(seeds, {item: [outcome per seed]}) of one reward model in one suite's records; an item every seed has."""
    seeds = sorted({r["seed"] for r in rows if r["variant"] == variant})
    by_item = {}
    for r in rows:
        if r["variant"] == variant:
            by_item.setdefault(r["item"], {})[r["seed"]] = outcome(r["margin"])
    return seeds, {item: [o[s] for s in seeds] for item, o in by_item.items() if len(o) == len(seeds)}


def detectable(result: dict) -> float | None:
    """The minimum detectable difference of an interval: (1.96 + 0.84) × its standard error, read from its width."""
    if result["ci_low"] is None:
        return None
    return round((Z_ALPHA + Z_POWER) * (result["ci_high"] - result["ci_low"]) / (2 * Z_ALPHA), 6)


def suite_stats(rows: list[dict], trained: list[str], compare: list[tuple[str, str]], resamples: int,
                seed: int) -> dict:
    """{models: {variant: {estimate, ci_low, ci_high, n, seeds, per_seed, ties, records}},
        differences: {"a-b": {estimate, ci_low, ci_high, n, seeds, detectable}}} of one suite's records."""
    clusters = {r["item"]: r["cluster"] for r in rows}
    variants = sorted({r["variant"] for r in rows}, key=lambda v: (v not in trained, trained.index(v) if v in trained else 0, v))
    out = {"models": {}, "differences": {}}
    arms = {v: arm(rows, v) for v in variants}
    for v, (seeds, by_item) in arms.items():
        items = sorted(by_item)
        matrix = np.array([by_item[i] for i in items]).T  # seeds × items
        result = seeded_bootstrap(matrix, clusters=[clusters[i] for i in items], resamples=resamples, seed=seed)
        mine = [r for r in rows if r["variant"] == v]
        out["models"][v] = {**result, "per_seed": {s: round(float(matrix[j].mean()), 6) for j, s in enumerate(seeds)},
                            "ties": sum(is_tie(r["margin"]) for r in mine), "records": len(mine)}
    for a, b in compare:
        if a in arms and b in arms:
            items = sorted(set(arms[a][1]) & set(arms[b][1]))
            if not items:
                continue
            result = seeded_bootstrap(np.array([arms[a][1][i] for i in items]).T,
                                      np.array([arms[b][1][i] for i in items]).T,
                                      clusters=[clusters[i] for i in items], resamples=resamples, seed=seed)
            result["seeds"] = (len(arms[a][0]), len(arms[b][0]))
            out["differences"][f"{a}-{b}"] = {**result, "detectable": detectable(result),
                                              "clusters": len({clusters[i] for i in items})}
    return out


def comparisons(params: dict) -> list[tuple[str, str]]:
    """eval.compare's pairs, music − volume_matched first."""
    pairs = [tuple(p) for p in params.get("eval", {}).get("compare", [])]
    return sorted(pairs, key=lambda p: p != LEAD)


def study_tables(exps: list[dict]) -> dict:
    """{(experiment name, source label): {"title", "order", "suites": {suite: suite_stats}}}."""
    tables = {}
    for e in exps:
        trained = list(e["params"].get("train", {}).get("variants", {}))
        resamples = e["params"].get("eval", {}).get("bootstrap_resamples", 1000)
        seed = e["params"].get("eval", {}).get("seed", 0)
        for label, source in e["records"].items():
            suites = sorted({r["suite"] for r in source["rows"]}, key=suite_order)
            tables[(e["name"], label)] = {
                "title": source["title"], "order": source["order"], "path": source["path"],
                "suites": {s: suite_stats([r for r in source["rows"] if r["suite"] == s], trained,
                                          comparisons(e["params"]), resamples, seed) for s in suites}}
    return tables


def suite_order(suite: str):
    """original first, then music_k1, music_k2, …, then the rest by name."""
    m = re.fullmatch(r"music_k(\d+)", suite)
    return (suite != "original", 0 if m is None else 1, int(m.group(1)) if m else 0, suite)


def study_records_csv(exps: list[dict]) -> str:
    """Every record the page used, one CSV: the experiment and the record file's source label before the
    records' own columns."""
    import csv
    import io
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RECORD_COLUMNS)
    for e in sorted(exps, key=lambda e: e["name"]):
        for label in sorted(e["records"]):
            body = records_csv(e["records"][label]["rows"]).splitlines()[1:]
            writer.writerows([e["name"], label, *row] for row in csv.reader(body))
    return buffer.getvalue()


def short_suite(label: str, suite: str) -> str:
    """A suite's name without its record file's label (the producers name suites `mt_bench/<source>/turn1`)."""
    if suite == label:
        return "all"
    return suite[len(label) + 1:] if suite.startswith(label + "/") else suite


def label_of(name: str) -> str:
    return name.replace("-", " − ")


def reference_label(variant: str) -> str:
    return {"longer_answer": "reference: longer answer wins", "gpt4": "reference: GPT-4 (pairwise judge)",
            "judge": "reference: the LLM judge"}.get(
        variant, f"reference: {variant}")


def suite_section(exps: list[dict], tables: dict, label: str) -> list[str]:
    """One record source's tables: accuracy per model and suite, each seed's, ties, then the differences."""
    present = [e for e in exps if (e["name"], label) in tables]
    first = tables[(present[0]["name"], label)]
    suites = sorted({s for e in present for s in tables[(e["name"], label)]["suites"]}, key=suite_order)
    sizes = {}
    for e in present:
        for s, t in tables[(e["name"], label)]["suites"].items():
            sizes.setdefault(s, {m["n"] for m in t["models"].values()})
    lines = [f"## {first['title']}", "", f"From `{first['path']}` in each experiment; (n) under a suite: its items. "
             "Accuracy: the share of items the model ranks as the suite counts right (a tie counts one half), mean "
             "over the model's seeds [95% interval over seeds and items]. Reference rows are not trained models.", ""]
    header = ["reward model", *(f"{short_suite(label, s)} ({'/'.join(map(str, sorted(sizes[s])))})" for s in suites)]
    body, ties, per_seed = [], [], []
    for e in present:
        trained = list(e["params"].get("train", {}).get("variants", {}))
        by_suite = tables[(e["name"], label)]["suites"]
        variants = []
        for s in suites:
            for v in by_suite.get(s, {"models": {}})["models"]:
                if v not in variants:
                    variants.append(v)
        for v in variants:
            if v not in trained and e is not present[0]:
                continue  # reference models do not depend on K: shown once
            row_label = f"{v}, trained at K={e['k']}" if v in trained else reference_label(v)
            models = [by_suite.get(s, {"models": {}})["models"].get(v) for s in suites]
            body.append([row_label, *("—" if m is None else cell(m["estimate"], m["ci_low"], m["ci_high"])
                                      for m in models)])
            ties.append([row_label, *("—" if m is None else f"{m['ties']} of {m['records']}" for m in models)])
            if any(m is not None and len(m["per_seed"]) > 1 for m in models):
                per_seed.append([row_label, *("—" if m is None else " · ".join(
                    f"{value:.3f}" for value in m["per_seed"].values()) for m in models)])
    lines += [markdown_table(header, body), ""]
    if per_seed:
        seeds = sorted({seed for e in present for t in tables[(e["name"], label)]["suites"].values()
                        for m in t["models"].values() if len(m["per_seed"]) > 1 for seed in m["per_seed"]})
        lines += [f"Each seed's accuracy (seeds {', '.join(map(str, seeds))}, in that order):", "",
                  markdown_table(header, per_seed), ""]
    lines += ["Ties (records whose margin is 0 to 6 decimals, over every seed):", "", markdown_table(header, ties), ""]
    diffs = []
    for e in present:
        by_suite = tables[(e["name"], label)]["suites"]
        names = []
        for s in suites:
            names += [n for n in by_suite.get(s, {"differences": {}})["differences"] if n not in names]
        for name in names:
            cells = []
            for s in suites:
                d = by_suite.get(s, {"differences": {}})["differences"].get(name)
                cells.append("—" if d is None else cell(d["estimate"], d["ci_low"], d["ci_high"],
                                                        f"detectable {d['detectable']:.3f}"))
            diffs.append([f"{label_of(name)}, trained at K={e['k']}", *cells])
    if diffs:
        lines += ["Differences on the same items: difference [95% interval over both arms' seeds and the items] "
                  "(the minimum detectable difference):", "", markdown_table(["difference", *header[1:]], diffs), ""]
    return lines


def lead_rows(exps: list[dict], tables: dict) -> list[dict]:
    """music − volume_matched in every suite of every experiment, in page order."""
    rows = []
    name = "-".join(LEAD)
    for e in exps:
        for label, t in sorted(((lb, t) for (en, lb), t in tables.items() if en == e["name"]),
                               key=lambda x: (x[1]["order"], x[0])):
            for suite, s in t["suites"].items():
                d = s["differences"].get(name)
                if d is not None:
                    rows.append({"k": e["k"], "source": label, "title": t["title"], "suite": short_suite(label, suite),
                                 **d})
    return rows


def lead_section(exps: list[dict], tables: dict) -> list[str]:
    rows = lead_rows(exps, tables)
    lines = ["## music − volume_matched", "",
             "The comparison this study is for: the same number of training pairs, MUSIC pairs in one arm and "
             "original pairs drawn again in the other. Difference in accuracy (mean over each arm's seeds) with "
             "its 95% interval over seeds and items (`stats.seeded_bootstrap`: each arm's seeds and the items, "
             "by cluster where the records give one, resampled together), and the minimum detectable difference.",
             ""]
    if not rows:
        return lines + ["(no experiment scored both music and volume_matched)", ""]
    table = [[f"{r['title']}: {r['suite']}", str(r["k"]), cell(r["estimate"], r["ci_low"], r["ci_high"]),
              f"{r['detectable']:.3f}", f"{r['n']} ({r['clusters']} clusters)" if r["clusters"] != r["n"] else str(r["n"]),
              f"{r['seeds'][0]} / {r['seeds'][1]}"] for r in rows]
    lines += [markdown_table(["suite", "trained at K", "music − volume_matched [95%]", "detectable",
                              "items", "seeds"], table), ""]
    above = [r for r in rows if r["ci_low"] is not None and r["ci_low"] > 0]
    below = [r for r in rows if r["ci_high"] is not None and r["ci_high"] < 0]
    said = lambda rs: ", ".join(f"{r['title']} {r['suite']} at K={r['k']} ({r['estimate']:+.3f})" for r in rs)  # noqa: E731
    lines += [f"Intervals above 0 (music better): {said(above) or 'none'}. Intervals below 0 (volume_matched "
              f"better): {said(below) or 'none'}. Every other interval contains 0: a difference there is not "
              "shown either way.", ""]
    return lines


def detect_section(exps: list[dict], tables: dict) -> list[str]:
    rows = lead_rows(exps, tables)
    values = sorted(r["detectable"] for r in rows if r["detectable"] is not None)
    span = f" Here it runs from {values[0]:.3f} to {values[-1]:.3f} (the column \"detectable\" above)." if values else ""
    return ["## What this study can and cannot detect", "",
            "The minimum detectable difference of a suite is (1.96 + 0.84) × SE ≈ 2.8 × SE, with SE the standard "
            "error of the difference read from its bootstrap interval (SE = interval width / 3.92): a true "
            "difference of that size gives an interval that excludes 0 in 80% of studies like this one (80% "
            "power, two-sided α = 0.05). A smaller true difference is likely to be missed: an interval that "
            "contains 0 does not show the two arms equal, only that any difference is smaller than about that "
            "size." + span + " The intervals include seed-to-seed variation (each arm's training seeds are "
            "resampled), so more seeds narrow them where seeds disagree, more items where items do; MT-Bench "
            "votes are resampled by the cluster the records give (one question and model pair), since a reward "
            "model gives the same verdict on every repeated vote." + one_seed_note(rows), ""]


def one_seed_note(rows: list[dict]) -> str:
    single = sorted({r["title"] for r in rows if max(r["seeds"]) == 1})
    if not single:
        return ""
    return (f" Scored on one seed per arm: {', '.join(single)}. Their intervals hold no seed-to-seed variation: "
            "they say how sure the difference is between those two models, not between the two ways of training, "
            "and their detectable differences are smaller than a study over seeds would give.")


def pairs_seen_section(exps: list[dict]) -> list[str]:
    seeds = sorted({seed for e in exps for (_, seed) in e["pairs_seen"]})
    lines = ["## Pairs seen in training", "",
             "Training pairs each model's trainer counted (`pairs_seen` in `data/train/<variant>/seed-<seed>/metrics.json`; "
             "n/a where the experiment did not record it). Made by contrast and fetch: " + "; ".join(
                 f"K={e['k']}: {e['summaries']['contrast'].get('pairs_train', 'n/a')} MUSIC train pairs, "
                 f"{e['summaries']['fetch'].get('train', 'n/a')} original train pairs" for e in exps) + ".", ""]
    body = []
    for e in exps:
        for variant in sorted({v for (v, _) in e["pairs_seen"]}):
            seen = [e["pairs_seen"].get((variant, s), "—") for s in seeds]
            body.append([f"{variant}, trained at K={e['k']}", *("n/a" if x is None else str(x) for x in seen)])
    return lines + [markdown_table(["reward model", *(f"seed {s}" for s in seeds)], body), ""]


def environment_section(exps: list[dict]) -> list[str]:
    """Each distinct environment.json of the experiments' stages, with the stages that ran on it."""
    seen = {}
    missing = []
    for e in exps:
        for path, env in sorted(e["environments"].items()):
            if env is None:
                missing.append(f"{e['name']}:{path}")
            else:
                seen.setdefault(json.dumps(env, sort_keys=True), []).append(f"{e['name']}:{path}")
    lines = ["## Hardware and software", "",
             "From the environment.json every stage writes beside its outputs (read from the DVC cache at the md5 "
             "each experiment's dvc.lock records). Float kernels differ across CPU types: the same numbers are "
             "expected on the same machine type only.", ""]
    for i, (text, where) in enumerate(sorted(seen.items(), key=lambda x: x[1][0])):
        env = json.loads(text)
        packages = ", ".join(f"{k} {v}" for k, v in sorted(env.get("packages", {}).items()))
        stages = folders([w.split(":", 1)[1].rsplit("/environment.json", 1)[0] for w in where])
        lines += [f"- Environment {i + 1}: {env.get('cpu')} ({env.get('machine')}, {env.get('cpu_count')} CPUs, "
                  f"{env.get('torch_threads')} torch threads, flags {', '.join(env.get('cpu_flags', [])) or 'none'}), "
                  f"GPUs: {', '.join(env.get('gpus') or []) or 'none'}; Python {env.get('python')}; {packages}. "
                  f"Stages: {', '.join(stages)}."]
    if not seen and not missing:
        lines.append("- (no environment.json among these experiments' outputs)")
    if missing:
        lines.append(f"- Not in this DVC cache ({len(missing)} files): {', '.join(sorted(missing)[:6])}"
                     + (" …" if len(missing) > 6 else "") + ".")
    return lines + [""]


def folders(paths: list[str]) -> list[str]:
    """Output folders, one entry per variant's training over its seeds: data/train/music (seeds 0, 1, 2, 3)."""
    seeds = {}
    for path in paths:
        m = re.fullmatch(r"(.+)/seed-(\d+)", path)
        seeds.setdefault(m.group(1) if m else path, set()).update({int(m.group(2))} if m else set())
    return [f"{p} (seeds {', '.join(map(str, sorted(s)))})" if s else p for p, s in sorted(seeds.items())]


def code_section(exps: list[dict], branches: dict, records_name: str) -> list[str]:
    lines = ["## Code and experiments", "",
             "- The code each experiment ran is its base commit (the commit `dvc exp run` started from).",
             "- Each experiment's commit is kept as a git branch (`dvc exp branch` does the same; `git merge -s ours` "
             "of that branch puts the commit in main's history, so that a clone of main holds it: this repo's main "
             "has its studies' commits so): check one out "
             "and its records and metrics are in git; `dvc checkout` restores its models from the DVC cache, or "
             "`dvc repro` rebuilds what the cache lacks.", ""]
    body = [[e["name"], str(e["k"]), f"`{e['base']}`", f"`{e['rev']}`", f"`{branches[e['name']]}`",
             f"`git switch --detach {e['rev'][:12]} && dvc checkout`"] for e in exps]
    lines += [markdown_table(["experiment", "K", "code commit (its base)", "experiment commit", "kept as",
                              "restore"], body), "",
              f"- Every record the numbers come from: [{records_name}]({records_name}) (columns "
              f"{', '.join(RECORD_COLUMNS)}; `source` names the record file: `held_out` is `data/eval/records.csv`, "
              "`mt_bench/<source>` is `data/eval/mt_bench/<source>/records.csv`, and so on). A margin is the reward "
              "of the answer the suite counts right minus the other's; a model is right when it is above 0, "
              "half right at 0.", ""]
    return lines


def data_section(exps: list[dict]) -> list[str]:
    first = exps[0]
    fetch, sim = first["summaries"]["fetch"], first["summaries"]["simulate"]
    params = first["params"]
    rel = sim.get("relatedness", {})
    lines = ["## Data", ""]
    if fetch:
        lines.append(f"- {fetch.get('rows_kept')} of {fetch.get('rows_read')} rows kept from `{fetch.get('origin')}` "
                     f"({fetch.get('skipped')} skipped: {fetch.get('skipped_by_reason')}); {fetch.get('train')} train "
                     f"and {fetch.get('test')} held-out pairs, {fetch.get('multi_turn')} multi-turn.")
    if sim:
        lines.append(f"- Simulated: {sim.get('trees')} trees ({sim.get('trees_train')} train, {sim.get('trees_test')} "
                     f"held out) of {params['simulate']['turns']} turns from {sim.get('seed_prompts')} sampled "
                     f"prompts; {sim.get('dropped')} dropped {sim.get('dropped_by_reason')}.")
    lines.append("- MUSIC pairs per trained K: " + ", ".join(
        f"K={e['k']}: {e['summaries']['contrast'].get('pairs_train')} train / "
        f"{e['summaries']['contrast'].get('pairs_test')} held out" for e in exps) + ".")
    if rel:
        lines.append(f"- How related each hidden instruction is to the user message it replaced (content-word "
                     f"overlap, 0 to 1, over {rel.get('hidden_instructions')} hidden instructions): mean "
                     f"{rel.get('mean', 0):.3f}, median {rel.get('median', 0):.3f}; {rel.get('share_unrelated', 0):.0%} "
                     f"share no content word with it, {rel.get('share_at_least_half', 0):.0%} share half or more.")
    lines.append(harder_contrast_line(exps))
    dtypes = sorted({str(e["params"].get("eval", {}).get("cpu_dtype")) for e in exps})
    lines.append(f"- Scoring dtype on a CPU (`eval.cpu_dtype`): {', '.join(dtypes)}; on a GPU the model's own dtype.")
    return lines + [""]


def harder_contrast_line(exps: list[dict]) -> str:
    """How many train trees `contrast.min_relatedness` would keep at each of RELATEDNESS_STEPS, per trained K."""
    counts = []
    for e in exps:
        if e["trees"] is None:
            counts.append(f"K={e['k']}: n/a ({TREES} not in this DVC cache)")
            continue
        train = [t for t in e["trees"] if t["split"] == "train"]
        kept = ", ".join(f"{sum(tree_relatedness(t, e['k']) >= x for t in train)} at {x}" for x in RELATEDNESS_STEPS)
        counts.append(f"K={e['k']}: of {len(train)} train trees, {kept}")
    used = sorted({str(e["params"].get("contrast", {}).get("min_relatedness", 0)) for e in exps})
    return ("- Harder contrast (`contrast.min_relatedness`: a train tree is kept when every hidden instruction of its "
            f"pair at K shares at least that share of content words with the message it replaced; this study used "
            f"{', '.join(used)}): trees kept, {'; '.join(counts)}.")


def flat(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: tree}


def params_section(exps: list[dict]) -> list[str]:
    params = exps[0]["params"]
    sections = [s for s in ("fetch", "simulate", "contrast", "train", "eval", "mt_bench", "reward_bench", "judge",
                            "best_of_n") if s in params]
    each = [flat(e["params"]) for e in exps]
    differ = sorted(k for k in set().union(*each) if len({repr(p.get(k)) for p in each}) > 1)
    said = (f"the experiments differ in {', '.join(differ)} only" if differ else "one experiment") + ": " + ", ".join(
        f"`{e['name']}` " + (" ".join(f"{k}={flat(e['params']).get(k)}" for k in differ) or f"K={e['k']}")
        for e in exps)
    return ["## Params", "",
            f"The study's params (the profile applied to params.yaml), as the first experiment has them; {said}.",
            "", "```yaml", *[f"{s}: {params[s]}" for s in sections], "```", ""]


def lock_inputs(lock: dict) -> list[tuple[str, str, str]]:
    """(stage, path, md5) of the inputs the study rests on: the data file, the base model, the trees, the models."""
    rows = []
    for stage, entry in sorted((lock or {}).get("stages", {}).items()):
        for dep in entry.get("deps", []):
            if not re.match(r"(stages|music_rm|configs)/", dep["path"]) and stage in ("fetch", "simulate"):
                rows.append((stage, dep["path"], dep.get("md5", "")))
        if stage in ("base_model", "simulate", "contrast") or stage.startswith("train@"):
            rows += [(stage, o["path"], o.get("md5", "")) for o in entry.get("outs", []) if "environment" not in o["path"]]
    return rows


def accuracy_by_k_plot(rows: dict, path) -> None:
    """Held-out MUSIC accuracy against the K of the pairs, one line per reward model, 95% intervals."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=100)
    for i, (row, by_suite) in enumerate(rows.items()):
        ks = sorted(int(s[len("music_k"):]) for s in by_suite if s.startswith("music_k"))
        acc = [by_suite[f"music_k{k}"]["accuracy"] for k in ks]
        err = [[a - by_suite[f"music_k{k}"]["ci_low"] for a, k in zip(acc, ks)],
               [by_suite[f"music_k{k}"]["ci_high"] - a for a, k in zip(acc, ks)]]
        offset = 0.05 * (i - (len(rows) - 1) / 2)
        # music once per trained K: music's colour, a marker and line style per K
        style = {} if "K=" not in row else {"marker": "osD^v"[int(row.rsplit("K=", 1)[1]) % 5],
                                            "linestyle": ("-", "--", ":", "-.")[int(row.rsplit("K=", 1)[1]) % 4]}
        ax.errorbar([k + offset for k in ks], acc, yerr=err, capsize=3, label=row, color=variant_color(row),
                    **{"marker": "o", **style})
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set(xlabel="K of the held-out MUSIC pairs", ylabel="pairwise accuracy", ylim=(0, 1.05),
           title="Held-out MUSIC pairs, by K (95% bootstrap CI)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7, loc="lower right")
    save_png(fig, path)



def heldout_accuracy_rows(exps: list[dict], tables: dict) -> dict:
    """{row label: {held-out suite: {accuracy, ci_low, ci_high}}} of the trained models, for accuracy_by_k_plot."""
    rows = {}
    for e in exps:
        suites = tables.get((e["name"], "held_out"), {}).get("suites", {})
        for v in e["params"].get("train", {}).get("variants", {}):
            entry = {s: {"accuracy": t["models"][v]["estimate"], "ci_low": t["models"][v]["ci_low"],
                         "ci_high": t["models"][v]["ci_high"]} for s, t in suites.items() if v in t["models"]}
            if entry:
                rows[f"{v}, trained at K={e['k']}"] = entry
    return rows


def differences_plot(exps: list[dict], tables: dict, path) -> None:
    """Each comparison on every held-out suite, per trained K, with its 95% interval over seeds and items."""
    plt = pyplot()
    held = [(e, tables[(e["name"], "held_out")]["suites"]) for e in exps if (e["name"], "held_out") in tables]
    names = sorted({n for _, suites in held for s in suites.values() for n in s["differences"]},
                   key=lambda n: n != "-".join(LEAD))
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(6 * max(1, len(names)), 3.6), dpi=100, squeeze=False)
    for ax, name in zip(axes[0], names):
        for i, (e, suites) in enumerate(held):
            keys = [s for s in suites if name in suites[s]["differences"]]
            d = [suites[s]["differences"][name] for s in keys]
            x = [j + 0.12 * (i - (len(held) - 1) / 2) for j in range(len(keys))]
            ax.errorbar(x, [r["estimate"] for r in d], yerr=[[r["estimate"] - r["ci_low"] for r in d],
                                                           [r["ci_high"] - r["estimate"] for r in d]],
                        marker="osD^v"[e["k"] % 5], capsize=3, linestyle="none", label=f"trained at K={e['k']}",
                        color=variant_color(name.split("-")[1]) if len(held) == 1 else None)
            ax.set_xticks(range(len(keys)), [short_suite("held_out", k) for k in keys])
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(ylabel="accuracy difference", title=f"{label_of(name)} (95% interval over seeds and items)")
        ax.legend(fontsize=7)
    save_png(fig, path)


def results_markdown(exps: list[dict], tables: dict, title: str, commands: str, branches: dict, files: dict) -> str:
    """The page. `files`: {"records", "differences", "by_k"}: the file names beside the page; "profile": its path."""
    lines = [f"# {title}", "",
             "Generated by `music-rm results` from the DVC experiments it names and the per-item records they "
             "wrote; do not edit by hand.", ""]
    lines += lead_section(exps, tables)
    lines += [f"![differences]({files['differences']})", ""]
    lines += detect_section(exps, tables)
    lines += ["## How it was run", "", "```bash", commands.strip(), "```", "",
              f"The commands head the study's profile, `{files['profile']}`, with its sizes, the time they were "
              "planned to take on this machine, and how an interrupted run resumes.", ""]
    lines += code_section(exps, branches, files["records"])
    lines += data_section(exps)
    lines += pairs_seen_section(exps)
    labels = sorted({lb for (_, lb) in tables}, key=lambda lb: (min(t["order"] for (_, l2), t in tables.items()
                                                                     if l2 == lb), lb))
    for label in labels:
        lines += suite_section(exps, tables, label)
        if label == "held_out":
            lines += [f"![accuracy by K]({files['by_k']})", ""]
    lines += environment_section(exps)
    lines += params_section(exps)
    lines += ["## Inputs (md5 as dvc.lock records them)", "",
              markdown_table(["experiment", "stage", "path", "md5"],
                             [[e["name"], stage, path, md5] for e in exps for stage, path, md5 in lock_inputs(e["lock"])]),
              ""]
    return "\n".join(lines)
