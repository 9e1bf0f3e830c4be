"""The experiment table: what changed between DVC experiments and what it did, in a terminal's width.

Read from what `dvc exp show --json` prints: one row per experiment (the workspace, the commit, each experiment),
a column per param whose value differs between the rows, and the held-out accuracy of every reward-model variant
on every suite of eval's metrics.json (original, music_k1 … music_kK).
"""
import textwrap

from ..core.io import flatten
from ..core import paths

MISSING = "-"
METRICS = f"{paths.EVAL}/metrics.json"
REFERENCES = {"longer_answer"}  # eval's reference beside the trained variants


def experiment_rows(show: list) -> list[dict]:
    """[{name, rev, params, eval}] of every experiment `dvc exp show --json` lists, in its order. A queued or running
    experiment has no metrics yet: its eval is empty, and no commit yet: its rev is "workspace" or a stash's."""
    rows = []

    def walk(node, name=None):
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and ("params" in data or "rev" in data):
                rev = str(data.get("rev") or node.get("rev") or "")
                label = node.get("name") or name or (rev if rev == "workspace" else rev[:7])
                params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
                metrics = (data.get("metrics") or {}).get(METRICS, {}).get("data", {})
                rows.append({"name": label, "rev": rev, "params": params, "eval": metrics})
            for key, value in node.items():
                if key != "data":
                    walk(value, node.get("name") if key == "revs" else None)
        elif isinstance(node, list):
            for value in node:
                walk(value, name)

    walk(show)
    return rows


def changed_params(rows: list[dict]) -> list[str]:
    """The params whose value differs between the rows, in params.yaml's order."""
    flat = [flatten(r["params"]) for r in rows if r["params"]]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    return [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]


def short_names(keys: list[str]) -> dict[str, str]:
    """{key: its shortest dotted suffix that no other key ends with} (train.config.learning_rate → learning_rate)."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(k != key and (k == suffix or k.endswith("." + suffix)) for k in keys):
                out[key] = suffix
                break
        else:
            out[key] = key
    return out


def _suite_label(suite: str) -> str:
    return "orig" if suite == "original" else suite.replace("music_", "")


def experiment_table(rows: list[dict], width: int = 120) -> str:
    """Plain text: experiment, the changed params, then per variant the accuracy on each suite (two decimals).
    When the params do not fit beside the accuracies, they share one `changed` column of key=value, clipped."""
    held = [{s: r.get("models", {}) for s, r in row["eval"].get("suites", {}).items()
             if s == "original" or s.startswith("music_k")} for row in rows]
    variants = list(dict.fromkeys(v for suites in held for models in suites.values() for v in models
                                  if v not in REFERENCES))
    suites = {v: sorted({s for by_suite in held for s, models in by_suite.items() if v in models},
                        key=lambda s: (s != "original", len(s), s)) for v in variants}
    changed = changed_params(rows)

    def value(row, key):
        v = flatten(row["params"]).get(key, MISSING) if row["params"] else MISSING
        return "null" if v is None else str(v)

    def acc(row, v, s):
        a = row["eval"].get("suites", {}).get(s, {}).get("models", {}).get(v, {}).get("estimate")
        return MISSING if a is None else f"{a:.2f}"

    name_w = max([len("experiment"), *(len(r["name"]) for r in rows)])
    groups = [max(len(v), sum(max(4, len(_suite_label(s))) + 1 for s in suites[v]) - 1) for v in variants]
    acc_w = sum(g + 3 for g in groups)
    param_cols = [(k, max(len(k), *(len(value(r, k)) for r in rows))) for k in changed]
    if name_w + sum(w + 2 for _, w in param_cols) + acc_w > width:  # one column of key=value instead
        room = max(12, width - name_w - 2 - acc_w)
        short = short_names(changed)
        texts = [" ".join(f"{short[k]}={value(r, k)}" for k in changed) for r in rows]
        texts = [t if len(t) <= room else t[: room - 1] + "…" for t in texts]
        param_cols = [("changed", max([len("changed"), *map(len, texts)]))]
        cells = [[t] for t in texts]
    else:
        cells = [[value(r, k) for k in changed] for r in rows]

    def line(first, params, accs):
        parts = [first.ljust(name_w), *(p.ljust(w) for p, (_, w) in zip(params, param_cols))]
        return ("  ".join(parts) + "".join(f" | {a.ljust(g)}" for a, g in zip(accs, groups))).rstrip()

    def accs_of(row):
        return [" ".join(acc(row, v, s).rjust(max(4, len(_suite_label(s)))) for s in suites[v]) for v in variants]

    header1 = line("", ["" for _ in param_cols], variants)
    header2 = line("experiment", [k for k, _ in param_cols],
                   [" ".join(_suite_label(s).rjust(max(4, len(_suite_label(s)))) for s in suites[v]) for v in variants])
    body = [line(r["name"], c, accs_of(r)) for r, c in zip(rows, cells)]
    notes = [f"held-out pairwise accuracy ({METRICS}): orig = original pairs, kK = MUSIC pairs cut after K "
             f"turns; {MISSING}: no result yet"]
    if not changed:
        notes.append("no param differs between these experiments")
    elif param_cols[0][0] == "changed":
        notes.append("changed: " + ", ".join(changed))
    return "\n".join([header1, header2, *body, *(textwrap.fill(n, width) for n in notes)])
