"""A study's results page from its DVC experiments: one experiment per contrast.turns (K), each with baseline,
music and volume_matched reward models scored on every suite.

`experiments` finds the experiments whose names start with a prefix in what `dvc exp show --json` gives and
reads their params, metrics and dvc.lock from git; `results_markdown` writes tables (accuracy with 95% intervals
beside the "longer answer wins" baseline, paired-bootstrap differences), the params and the input hashes; two
PNG plots go beside it. The same experiments give the same bytes.
"""
import json
import re

import yaml

from .report import pyplot, save_png, variant_color
from .stats import cell, markdown_table

METRICS = {"eval": "data/eval/metrics.json", "fetch": "data/fetch/summary.json",
           "simulate": "data/simulate/summary.json", "contrast": "data/contrast/summary.json"}


def experiments(show: list, prefix: str, read) -> list[dict]:
    """[{name, rev, k, params, metrics: {file: data}, lock}] of the finished experiments named `prefix`…, in K order.

    `show` is what `dvc exp show --json` prints; it names the experiments, their commits and their metrics files.
    `read(rev, path)` gives a file's text at a commit: params, metrics and dvc.lock are read from git as the
    stages wrote them, since `dvc exp show --json` leaves empty mappings out of the files it shows."""
    found = {}

    def walk(node):
        if isinstance(node, dict):
            data = node.get("data")
            name = node.get("name")
            # a running or queued experiment has no commit yet ("workspace" or a stash): left out
            if (isinstance(data, dict) and re.fullmatch(r"[0-9a-f]{40}", str(data.get("rev"))) and name
                    and name.startswith(prefix)):
                found[name] = (data["rev"], sorted(data.get("metrics") or {}))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(show)
    exps = []
    for name, (rev, metric_files) in found.items():
        params = yaml.safe_load(read(rev, "params.yaml"))
        exps.append({"name": name, "rev": rev, "k": params["contrast"]["turns"], "params": params,
                     "metrics": {path: json.loads(read(rev, path)) for path in metric_files},
                     "lock": yaml.safe_load(read(rev, "dvc.lock"))})
    return sorted(exps, key=lambda e: e["k"])


def rm_rows(exps: list[dict], path: str, pick) -> dict[str, dict]:
    """{row label: the metrics `pick` takes from one RM's entry}: baseline and volume_matched once (they do not
    depend on K: every experiment holds the same ones), music once per K."""
    rows = {}
    first = exps[0]["metrics"].get(path, {})
    for variant in ("baseline", "volume_matched"):
        if variant in first or variant in first.get("reward_models", {}):
            rows[variant] = pick(first, variant)
    for e in exps:
        rows[f"music, trained at K={e['k']}"] = pick(e["metrics"].get(path, {}), "music")
    return rows


def heldout_tables(exps: list[dict]) -> tuple[str, str, dict]:
    """(accuracy table, differences table, {row: {suite: accuracy entry}}) of the held-out suites."""
    rows = rm_rows(exps, METRICS["eval"], lambda m, v: m.get(v, {}))
    suites = sorted(next(iter(rows.values())), key=lambda s: (s != "original", s))
    longer = exps[0]["metrics"][METRICS["eval"]].get("longer_answer", {})
    table = markdown_table(["reward model", *suites], [
        [row, *(cell(r[s]["accuracy"], r[s]["ci_low"], r[s]["ci_high"], r[s]["n"]) for s in suites)]
        for row, r in {**rows, "longer answer wins": longer}.items()])
    diffs = []
    for e in exps:
        for name, by_suite in sorted(e["metrics"][METRICS["eval"]].get("differences", {}).items()):
            diffs.append([f"{name.replace('-', ' − ')}, trained at K={e['k']}",
                          *(cell(by_suite[s]["difference"], by_suite[s]["ci_low"], by_suite[s]["ci_high"], by_suite[s]["n"])
                            for s in suites)])
    return table, markdown_table(["difference", *suites], diffs), rows


def external_tables(exps: list[dict], path: str, kind: str) -> str:
    """MT-Bench (per turn) or RewardBench (per section) agreement, the longer-answer baseline, differences."""
    if path not in exps[0]["metrics"]:
        return f"(no {kind} results in these experiments)"
    if kind == "MT-Bench":
        cols = ["turn1", "turn2"]
        pick = lambda m, v: m.get("reward_models", {}).get(v, {})  # noqa: E731
        rows = rm_rows(exps, path, pick)
        base = exps[0]["metrics"][path]["baselines"]
        rows["longer answer wins"] = {c: base[f"longer_wins.{c}"] for c in cols}
        rows["GPT-4 (pairwise judge)"] = {c: base[f"gpt4.{c}"] for c in cols}
        body = [[row, *(cell(r[c]["accuracy"], r[c]["ci_low"], r[c]["ci_high"], r[c]["n"]) for c in cols)]
                for row, r in rows.items()]
        table = markdown_table(["judge of the human votes", "turn 1 agreement", "turn 2 agreement"], body)
        diffs = [[f"{name.replace('-', ' − ')}, trained at K={e['k']}",
                  *(cell(d[c]["difference"], d[c]["ci_low"], d[c]["ci_high"], d[c]["n"]) for c in cols)]
                 for e in exps for name, d in sorted(e["metrics"][path].get("differences", {}).items())]
        return table + "\n\n" + markdown_table(["difference", "turn 1", "turn 2"], diffs)
    pick = lambda m, v: m.get("reward_models", {}).get(v, {})  # noqa: E731
    rows = rm_rows(exps, path, pick)
    rows["longer answer wins"] = exps[0]["metrics"][path].get("longer_answer", {})
    sections = sorted({s for r in rows.values() for s in r.get("sections", {})})
    body = [[row, *(cell(r["sections"][s]["score"], r["sections"][s]["ci_low"], r["sections"][s]["ci_high"],
                         r["sections"][s]["n"]) for s in sections)] for row, r in rows.items()]
    table = markdown_table(["reward model", *sections], body)
    diffs = [[f"{name.replace('-', ' − ')}, trained at K={e['k']}", cell(d["difference"], d["ci_low"], d["ci_high"], d["n"])]
             for e in exps for name, d in sorted(e["metrics"][path].get("differences", {}).items())]
    return table + "\n\n" + markdown_table(["difference", "all pairs"], diffs)


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


def differences_plot(exps: list[dict], path) -> None:
    """music − baseline and music − volume_matched on every held-out suite, per trained K, 95% paired intervals."""
    plt = pyplot()
    names = sorted({n for e in exps for n in e["metrics"][METRICS["eval"]].get("differences", {})})
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(6 * max(1, len(names)), 3.6), dpi=100, squeeze=False)
    for ax, name in zip(axes[0], names):
        for i, e in enumerate(exps):
            by_suite = e["metrics"][METRICS["eval"]]["differences"].get(name, {})
            suites = sorted(by_suite, key=lambda s: (s != "original", s))
            d = [by_suite[s]["difference"] for s in suites]
            err = [[x - by_suite[s]["ci_low"] for x, s in zip(d, suites)],
                   [by_suite[s]["ci_high"] - x for x, s in zip(d, suites)]]
            ax.errorbar([j + 0.12 * (i - (len(exps) - 1) / 2) for j in range(len(suites))], d, yerr=err, marker="o",
                        capsize=3, linestyle="none", label=f"trained at K={e['k']}")
            ax.set_xticks(range(len(suites)), suites)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(ylabel="accuracy difference", title=name.replace("-", " − "))
        ax.legend(fontsize=7)
    save_png(fig, path)


def lock_inputs(lock: dict) -> list[tuple[str, str, str]]:
    """(stage, path, md5) of the inputs the study rests on: the data file, the base model, the trees."""
    rows = []
    for stage, entry in sorted((lock or {}).get("stages", {}).items()):
        for dep in entry.get("deps", []):
            if not re.match(r"(stages|music_rm|configs)/", dep["path"]) and stage in ("fetch", "simulate"):
                rows.append((stage, dep["path"], dep.get("md5", "")))
        if stage in ("base_model", "simulate", "contrast") or stage.startswith("train@"):
            rows += [(stage, o["path"], o.get("md5", "")) for o in entry.get("outs", []) if "environment" not in o["path"]]
    return rows


def results_markdown(exps: list[dict], title: str, commands: str, plots: dict) -> str:
    """The page. `plots`: {"by_k": file name, "differences": file name}."""
    first = exps[0]
    fetch, sim = first["metrics"][METRICS["fetch"]], first["metrics"][METRICS["simulate"]]
    contrast = {e["k"]: e["metrics"][METRICS["contrast"]] for e in exps}
    rel = sim.get("relatedness", {})
    table, diff_table, rows = heldout_tables(exps)
    params = first["params"]
    lines = [
        f"# {title}", "",
        "Generated by `music-rm results` from the DVC experiments it names; do not edit by hand.", "",
        "## How it was run", "", "```bash", commands.strip(), "```", "",
        "## Data", "",
        f"- {fetch['rows_kept']} of {fetch['rows_read']} rows kept from `{fetch['origin']}` ({fetch['skipped']} skipped: "
        f"{fetch['skipped_by_reason']}); {fetch['train']} train and {fetch['test']} held-out pairs, "
        f"{fetch['multi_turn']} multi-turn.",
        f"- Simulated: {sim['trees']} trees ({sim['trees_train']} train, {sim['trees_test']} held out) of "
        f"{params['simulate']['turns']} turns from {sim['seed_prompts']} sampled prompts; {sim['dropped']} dropped "
        f"{sim['dropped_by_reason']}.",
        "- MUSIC pairs per K trained on: " + ", ".join(f"K={k}: {c['pairs_train']} train / {c['pairs_test']} held out"
                                                      for k, c in sorted(contrast.items())) + ".",
        f"- How related each hidden instruction is to the user message it replaced (content-word overlap, 0 to "
        f"1, over {rel.get('hidden_instructions')} hidden instructions): mean {rel.get('mean', 0):.3f}, median "
        f"{rel.get('median', 0):.3f}; {rel.get('share_unrelated', 0):.0%} share no content word with it, "
        f"{rel.get('share_at_least_half', 0):.0%} share half or more. By bin: {rel.get('bins')}.", "",
        "## Held-out pairs: accuracy [95% bootstrap interval] (n)", "",
        "original: held-out HH pairs (the last answer differs); music_kK: held-out MUSIC pairs cut after K turns. "
        "baseline and volume_matched are the same models in every experiment.", "",
        table, "", f"![accuracy by K]({plots['by_k']})", "",
        "## Differences on the same pairs: accuracy difference [95% paired-bootstrap interval] (n)", "",
        diff_table, "", f"![differences]({plots['differences']})", "",
        "## MT-Bench human votes (non-tie), per turn", "",
        external_tables(exps, "data/eval/mt_bench/shared/metrics.json", "MT-Bench"), "",
        "## RewardBench, LLMBar subsets (Chat Hard: 5 of its 6 subsets)", "",
        external_tables(exps, "data/eval/reward_bench/llmbar/metrics.json", "RewardBench"), "",
        "## Params", "",
        "The study's params (the profile applied to params.yaml); the experiments differ in contrast.turns only: "
        + ", ".join(f"`{e['name']}` K={e['k']}" for e in exps) + ".", "",
        "```yaml", *[f"{section}: {params[section]}" for section in
                     ("fetch", "simulate", "contrast", "train", "eval", "mt_bench", "reward_bench")], "```", "",
        "## Inputs (md5 as dvc.lock records them)", "",
        markdown_table(["experiment", "stage", "path", "md5"],
                       [[e["name"], stage, path, md5] for e in exps for stage, path, md5 in lock_inputs(e["lock"])]),
        "",
    ]
    return "\n".join(lines)
