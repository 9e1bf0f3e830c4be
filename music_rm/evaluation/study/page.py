"""A study's results page: its tables and lists from the study's numbers (tables.py), its prose in
`templates/study.md`."""
import json
import re
from importlib import resources

from ..estimates import Difference
from ..report import cell, markdown_table
from .collect import RECORD_COLUMNS, RELATEDNESS_STEPS, TREES, Experiment, Study
from .tables import LEAD, LeadRow, SourceTable, lead_rows, short_suite, suite_order

TEMPLATE = resources.files("music_rm.evaluation") / "templates" / "study.md"
# the sections of params.yaml the page shows, in its order
PARAMS_SHOWN = ("fetch", "simulate", "contrast", "train", "eval", "mt_bench", "reward_bench", "judge", "best_of_n")
REFERENCES = {"longer_answer": "reference: longer answer wins", "gpt4": "reference: GPT-4 (pairwise judge)",
              "judge": "reference: the LLM judge"}


def comparison_label(name: str) -> str:
    return name.replace("-", " − ")


def items(d: Difference) -> str:
    return f"{d.n} ({d.clusters} clusters)" if d.clusters != d.n else str(d.n)


def lead_table(rows: list[LeadRow]) -> str:
    body = [[f"{r.source.title}: {r.suite}", str(r.experiment.k), cell(r.difference.estimate, r.difference.ci_low,
                                                                        r.difference.ci_high),
             f"{r.difference.detectable:.3f}", items(r.difference), f"{r.difference.seeds} / {r.difference.seeds_b}"]
            for r in rows]
    return markdown_table(["suite", "trained at K", f"{comparison_label('-'.join(LEAD))} [95%]", "detectable",
                           "items", "seeds"], body)


def named(rows: list[LeadRow]) -> str:
    return ", ".join(f"{r.source.title} {r.suite} at K={r.experiment.k} ({r.difference.estimate:+.3f})" for r in rows)


def source_section(exps: list[Experiment], tables: dict[tuple[str, str], SourceTable], label: str) -> dict:
    """One record file's tables: accuracy per model and suite, each seed's, ties, and the differences."""
    present = [tables[(e.name, label)] for e in exps if (e.name, label) in tables]
    suites = sorted({s for t in present for s in t.suites}, key=suite_order)
    sizes = {}
    for t in present:
        for s, result in t.suites.items():
            sizes.setdefault(s, {m.n for m in result.models.values()})
    header = ["reward model", *(f"{short_suite(label, s)} ({'/'.join(map(str, sorted(sizes[s])))})" for s in suites)]
    body, ties, per_seed, diffs = [], [], [], []
    seeds = sorted({int(seed) for t in present for r in t.suites.values() for m in r.models.values() if m.seeds > 1
                    for seed in m.per_seed})
    for t in present:
        e = t.experiment
        variants = list(dict.fromkeys(v for s in suites if s in t.suites for v in t.suites[s].models))
        for v in variants:
            if v not in e.trained() and t is not present[0]:
                continue  # reference models do not depend on K: shown once
            row = f"{v}, trained at K={e.k}" if v in e.trained() else REFERENCES.get(v, f"reference: {v}")
            models = [t.suites[s].models.get(v) if s in t.suites else None for s in suites]
            body.append([row, *("—" if m is None else cell(m.estimate, m.ci_low, m.ci_high) for m in models)])
            ties.append([row, *("—" if m is None else f"{m.ties} of {m.records}" for m in models)])
            if any(m is not None and m.seeds > 1 for m in models):
                per_seed.append([row, *("—" if m is None else " · ".join(
                    f"{x['estimate']:.3f}" for x in m.per_seed.values()) for m in models)])
        for name in dict.fromkeys(n for s in suites if s in t.suites for n in t.suites[s].differences):
            found = [t.suites[s].differences.get(name) if s in t.suites else None for s in suites]
            diffs.append([f"{comparison_label(name)}, trained at K={e.k}", *(
                "—" if d is None else cell(d.estimate, d.ci_low, d.ci_high, f"detectable {d.detectable:.3f}")
                for d in found)])
    first = present[0].source
    return {"label": label, "title": first.title, "path": first.path, "accuracy": markdown_table(header, body),
            "seeds": ", ".join(map(str, seeds)), "per_seed": markdown_table(header, per_seed) if per_seed else "",
            "ties": markdown_table(header, ties),
            "differences": markdown_table(["difference", *header[1:]], diffs) if diffs else ""}


def folders(paths: list[str]) -> list[str]:
    """Output folders, one entry per variant's training over its seeds: data/train/music (seeds 0, 1, 2, 3)."""
    seeds = {}
    for path in paths:
        m = re.fullmatch(r"(.+)/seed-(\d+)", path)
        seeds.setdefault(m.group(1) if m else path, set()).update({int(m.group(2))} if m else set())
    return [f"{p} (seeds {', '.join(map(str, sorted(s)))})" if s else p for p, s in sorted(seeds.items())]


def environment_lines(exps: list[Experiment]) -> list[str]:
    """Each distinct environment.json of the experiments' stages, with the stages that ran on it."""
    seen, missing = {}, []
    for e in exps:
        for path, env in sorted(e.environments.items()):
            if env is None:
                missing.append(f"{e.name}:{path}")
            else:
                seen.setdefault(json.dumps(env, sort_keys=True), []).append(f"{e.name}:{path}")
    lines = []
    for i, (text, where) in enumerate(sorted(seen.items(), key=lambda x: x[1][0])):
        env = json.loads(text)
        packages = ", ".join(f"{k} {v}" for k, v in sorted(env.get("packages", {}).items()))
        stages = folders([w.split(":", 1)[1].rsplit("/environment.json", 1)[0] for w in where])
        lines.append(f"Environment {i + 1}: {env.get('cpu')} ({env.get('machine')}, {env.get('cpu_count')} CPUs, "
                     f"{env.get('torch_threads')} torch threads, flags {', '.join(env.get('cpu_flags', [])) or 'none'}), "
                     f"GPUs: {', '.join(env.get('gpus') or []) or 'none'}; Python {env.get('python')}; {packages}. "
                     f"Stages: {', '.join(stages)}.")
    if not seen and not missing:
        lines.append("(no environment.json among these experiments' outputs)")
    if missing:
        lines.append(f"Not in this DVC cache ({len(missing)} files): {', '.join(sorted(missing)[:6])}"
                     + (" …" if len(missing) > 6 else "") + ".")
    return lines


def data_lines(exps: list[Experiment]) -> list[str]:
    first = exps[0]
    fetch, sim = first.summaries["fetch"], first.summaries["simulate"]
    rel = sim.get("relatedness", {})
    lines = []
    if fetch:
        lines.append(f"{fetch.get('rows_kept')} of {fetch.get('rows_read')} rows kept from `{fetch.get('origin')}` "
                     f"({fetch.get('skipped')} skipped: {fetch.get('skipped_by_reason')}); {fetch.get('train')} train "
                     f"and {fetch.get('test')} held-out pairs, {fetch.get('multi_turn')} multi-turn.")
    if sim:
        lines.append(f"Simulated: {sim.get('trees')} trees ({sim.get('trees_train')} train, {sim.get('trees_test')} "
                     f"held out) of {first.params['simulate']['turns']} turns from {sim.get('seed_prompts')} sampled "
                     f"prompts; {sim.get('dropped')} dropped {sim.get('dropped_by_reason')}.")
    lines.append("MUSIC pairs per trained K: " + ", ".join(
        f"K={e.k}: {e.summaries['contrast'].get('pairs_train')} train / "
        f"{e.summaries['contrast'].get('pairs_test')} held out" for e in exps) + ".")
    if rel:
        lines.append(f"How related each hidden instruction is to the user message it replaced (content-word "
                     f"overlap, 0 to 1, over {rel.get('hidden_instructions')} hidden instructions): mean "
                     f"{rel.get('mean', 0):.3f}, median {rel.get('median', 0):.3f}; {rel.get('share_unrelated', 0):.0%} "
                     f"share no content word with it, {rel.get('share_at_least_half', 0):.0%} share half or more.")
    counts = [f"K={e.k}: n/a ({TREES} not in this DVC cache)" if e.trees_kept is None else
              f"K={e.k}: of {e.trees_kept['train']} train trees, "
              + ", ".join(f"{e.trees_kept[str(x)]} at {x}" for x in RELATEDNESS_STEPS) for e in exps]
    used = sorted({str(e.params.get("contrast", {}).get("min_relatedness", 0)) for e in exps})
    lines.append("Harder contrast (`contrast.min_relatedness`: a train tree is kept when every hidden instruction of "
                 "its pair at K shares at least that share of content words with the message it replaced; this study "
                 f"used {', '.join(used)}): trees kept, {'; '.join(counts)}.")
    dtypes = sorted({str(e.params.get("eval", {}).get("cpu_dtype")) for e in exps})
    lines.append(f"Scoring dtype on a CPU (`eval.cpu_dtype`): {', '.join(dtypes)}; on a GPU the model's own dtype.")
    return lines


def pairs_seen(exps: list[Experiment]) -> tuple[str, str]:
    """(what contrast and fetch made, the table of pairs each model's trainer counted)."""
    keys = {e.name: {(k.rpartition("/")[0], int(k.rpartition("/")[2])): v for k, v in e.pairs_seen.items()}
            for e in exps}
    seeds = sorted({seed for by_key in keys.values() for (_, seed) in by_key})
    made = "; ".join(f"K={e.k}: {e.summaries['contrast'].get('pairs_train', 'n/a')} MUSIC train pairs, "
                     f"{e.summaries['fetch'].get('train', 'n/a')} original train pairs" for e in exps)
    body = []
    for e in exps:
        for variant in sorted({v for (v, _) in keys[e.name]}):
            seen = [keys[e.name].get((variant, s), "—") for s in seeds]
            body.append([f"{variant}, trained at K={e.k}", *("n/a" if x is None else str(x) for x in seen)])
    return made, markdown_table(["reward model", *(f"seed {s}" for s in seeds)], body)


def params_said(exps: list[Experiment]) -> str:
    from ...core.io import flatten

    each = [flatten(e.params) for e in exps]
    differ = sorted(k for k in set().union(*each) if len({repr(p.get(k)) for p in each}) > 1)
    return (f"the experiments differ in {', '.join(differ)} only" if differ else "one experiment") + ": " + ", ".join(
        f"`{e.name}` " + (" ".join(f"{k}={flat.get(k)}" for k in differ) or f"K={e.k}") for e, flat in zip(exps, each))


def render(study: Study, tables: dict[tuple[str, str], SourceTable], files: dict) -> str:
    """The page. `files`: {"records", "differences", "by_k"}: the file names beside the page."""
    import jinja2

    exps = study.experiments
    rows = lead_rows(exps, tables)
    detectable = sorted(r.difference.detectable for r in rows if r.difference.detectable is not None)
    labels = sorted({lb for (_, lb) in tables}, key=lambda lb: (min(t.source.order for (_, l2), t in tables.items()
                                                                     if l2 == lb), lb))
    made, pairs_table = pairs_seen(exps)
    first = exps[0].params
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE.read_text(encoding="utf-8")).render(
        title=study.title, files=files, commands=study.commands.strip(), profile=study.profile,
        lead_table=lead_table(rows) if rows else "",
        above=named([r for r in rows if r.difference.ci_low is not None and r.difference.ci_low > 0]),
        below=named([r for r in rows if r.difference.ci_high is not None and r.difference.ci_high < 0]),
        detectable=(detectable[0], detectable[-1]) if detectable else None,
        one_seed=", ".join(sorted({r.source.title for r in rows if max(r.difference.seeds, r.difference.seeds_b) == 1})),
        code_table=markdown_table(["experiment", "K", "code commit (its base)", "experiment commit", "kept as",
                                   "restore"], [[e.name, str(e.k), f"`{e.base}`", f"`{e.rev}`", f"`{e.branch}`",
                                                 f"`git switch --detach {e.rev[:12]} && dvc checkout`"] for e in exps]),
        record_columns=", ".join(RECORD_COLUMNS), data_lines=data_lines(exps), pairs_made=made,
        pairs_table=pairs_table, sources=[source_section(exps, tables, label) for label in labels],
        environment_lines=environment_lines(exps), params_said=params_said(exps),
        params_lines=[f"{s}: {first[s]}" for s in PARAMS_SHOWN if s in first],
        inputs_table=markdown_table(["experiment", "stage", "path", "md5"],
                                    [[e.name, *row] for e in exps for row in e.inputs]))
