"""A study's experiments, read from git and the DVC cache, into two files a page is rendered from.

A study is a set of DVC experiments named `<study>-…`, each with one contrast.turns (K) and every training seed
of every variant. `collect` reads, at each experiment's commit, its params, dvc.lock, summaries, the record files
(records.py) and each model's "pairs seen"; the stages' environment.json files and the simulated trees come from
the DVC cache by the md5 dvc.lock gives. `write_study` saves what the page needs: `<study>-records.csv` (every
record, with its experiment and record file) and `<study>-experiments.json` (the rest); `read_study` loads them.
"""
import csv
import io
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field, fields

import yaml

from ...core.errors import InputError
from ...core.io import write_text
from ...method.contrast import tree_relatedness
from ..experiments import experiment_rows
from ..records import COLUMNS, Record, from_row, parse_records, records_csv, with_lengths

SUMMARIES = {"fetch": "data/fetch/summary.json", "simulate": "data/simulate/summary.json",
             "contrast": "data/contrast/summary.json"}
# record files: (path pattern, the source's label, its title on the page), in page order
SOURCES = ((re.compile(r"data/eval/records\.csv"), "held_out", "Held-out pairs"),
           (re.compile(r"data/eval/mt_bench/([^/]+)/records\.csv"), "mt_bench/{}", "MT-Bench human votes ({})"),
           (re.compile(r"data/eval/reward_bench/([^/]+)/records\.csv"), "reward_bench/{}", "RewardBench ({})"),
           (re.compile(r"data/eval/judge/([^/]+)/records\.csv"), "judge/{}", "LLM judge's verdicts ({})"),
           (re.compile(r"data/eval/best_of_n/([^/]+)/records\.csv"), "best_of_n/{}", "Best-of-N ({})"))
RECORD_COLUMNS = ("experiment", "source", *COLUMNS)
# contrast.min_relatedness values the page counts the train trees for (the harder-contrast option)
RELATEDNESS_STEPS = (0.1, 0.25, 0.5)
TREES = "data/simulate/trees.jsonl"


@dataclass
class RecordFile:
    """One record file of an experiment: its label and title on the page, its path, its records."""
    label: str
    title: str
    order: int
    path: str
    records: list[Record] = field(default_factory=list)


@dataclass
class Experiment:
    """What the page shows of one experiment. `pairs_seen`: {"<variant>/<seed>": count or None}; `environments`:
    {environment.json path: its content, None when the DVC cache lacks it}; `trees_kept`: {"train": train trees,
    "0.1": kept at 0.1, …}, None when the cache lacks the trees; `inputs`: (stage, path, md5) of what it rests on."""
    name: str
    rev: str
    base: str
    branch: str
    k: int
    params: dict
    summaries: dict
    pairs_seen: dict
    environments: dict
    trees_kept: dict | None
    inputs: list
    sources: dict = field(default_factory=dict)

    def trained(self) -> list[str]:
        return list(self.params.get("train", {}).get("variants", {}))


@dataclass
class Study:
    name: str
    title: str
    profile: str
    commands: str
    experiments: list[Experiment]


def source_of(path: str) -> tuple[str, str, int] | None:
    """(label, title, page order) of a record file's path; None for any other file."""
    for order, (pattern, label, title) in enumerate(SOURCES):
        m = pattern.fullmatch(path)
        if m:
            return label.format(*m.groups()), title.format(*m.groups()), order
    return None


def experiment_revs(show, prefix: str) -> dict[str, str]:
    """{name: commit} of the finished experiments named `prefix`… in what `dvc exp show --json` prints (a running
    or queued experiment has no commit yet: left out)."""
    return {r["name"]: r["rev"] for r in experiment_rows(show)
            if r["name"].startswith(prefix) and re.fullmatch(r"[0-9a-f]{40}", r["rev"])}


def trees_kept(trees: list[dict], k: int) -> dict:
    """How many train trees `contrast.min_relatedness` would keep at each of RELATEDNESS_STEPS, at K."""
    train = [t for t in trees if t["split"] == "train"]
    return {"train": len(train), **{str(x): sum(tree_relatedness(t, k) >= x for t in train) for x in RELATEDNESS_STEPS}}


def lock_inputs(lock: dict) -> list[list[str]]:
    """(stage, path, md5) of the inputs the study rests on: the data file, the base model, the trees, the models."""
    rows = []
    for stage, entry in sorted((lock or {}).get("stages", {}).items()):
        for dep in entry.get("deps", []):
            if not re.match(r"(stages|music_rm|configs)/", dep["path"]) and stage in ("fetch", "simulate"):
                rows.append([stage, dep["path"], dep.get("md5", "")])
        if stage in ("base_model", "simulate", "contrast") or stage.startswith("train@"):
            rows += [[stage, o["path"], o.get("md5", "")] for o in entry.get("outs", []) if "environment" not in o["path"]]
    return rows


def collect(revs: dict[str, str], read, files, cached, base, branches: dict[str, str]) -> list[Experiment]:
    """The experiments `revs` names ({name: commit}), in K order, then name. `read(rev, path)` gives a file's text at
    a commit (None when it is not there), `files(rev)` the paths git holds at a commit, `cached(md5)` a DVC-cached
    file's text (None when the cache lacks it), `base(rev)` the commit an experiment started from."""
    exps = []
    for name, rev in revs.items():
        params = yaml.safe_load(read(rev, "params.yaml"))
        lock = yaml.safe_load(read(rev, "dvc.lock") or "{}") or {}
        sources = {}
        for path in sorted(files(rev)):
            source = source_of(path)
            if source:
                sources[source[0]] = RecordFile(*source, path, parse_records(read(rev, path)))
        if not sources:
            raise InputError(name, None, None, "holds no record file (data/eval/records.csv): it ran before "
                                               "the suites wrote per-item records")
        held = sources.get("held_out")
        seeds = sorted({r.seed for r in (held.records if held else [])} | set(params.get("train", {}).get("seeds", [])))
        pairs_seen = {}
        for variant in sorted(params.get("train", {}).get("variants", {})):
            for seed in seeds:
                text = read(rev, f"data/train/{variant}/seed-{seed}/metrics.json")
                pairs_seen[f"{variant}/{seed}"] = json.loads(text).get("pairs_seen") if text else None
        environments, kept = {}, None
        for stage, entry in sorted(lock.get("stages", {}).items()):
            for out in entry.get("outs", []):
                if out["path"].endswith("environment.json"):
                    text = cached(out.get("md5", ""))
                    environments[out["path"]] = json.loads(text) if text else None
                elif out["path"] == TREES:
                    text = cached(out.get("md5", ""))
                    if text:
                        kept = trees_kept([json.loads(line) for line in text.splitlines() if line.strip()],
                                          params["contrast"]["turns"])
        exps.append(Experiment(name, rev, base(rev), branches[name], params["contrast"]["turns"], params,
                               {key: json.loads(read(rev, path) or "{}") for key, path in SUMMARIES.items()},
                               pairs_seen, environments, kept, lock_inputs(lock), sources))
    return sorted(exps, key=lambda e: (e.k, e.name))


def _without_records(e: Experiment) -> dict:
    """An experiment as the experiments file holds it: its record files by path (their records are in the CSV)."""
    out = {f.name: getattr(e, f.name) for f in fields(e)}
    return {**out, "sources": {label: s.path for label, s in e.sources.items()}}


def records_text(exps: list[Experiment]) -> str:
    """Every record the page uses, one CSV: the experiment and its record file's label before the records' own
    columns."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RECORD_COLUMNS)
    for e in sorted(exps, key=lambda e: e.name):
        for label in sorted(e.sources):
            body = records_csv(e.sources[label].records).splitlines()[1:]
            writer.writerows([e.name, label, *row] for row in csv.reader(body))
    return buffer.getvalue()


def write_study(study: Study, records_path, experiments_path, roots=()) -> None:
    """The study's two files; each checkout folder of `roots` is written as `${REPO}` (profiles write absolute
    paths into params.yaml, and the page names them as the profile does, wherever the study ran)."""
    text = json.dumps({"name": study.name, "title": study.title, "profile": study.profile, "commands": study.commands,
                       "experiments": [_without_records(e) for e in study.experiments]}, ensure_ascii=False)
    for root in sorted(roots, key=len, reverse=True):
        text = text.replace(json.dumps(root)[1:-1], "${REPO}")
    write_text(records_path, records_text(study.experiments))
    # not sorted: params keep params.yaml's order on the page
    write_text(experiments_path, json.dumps(json.loads(text), ensure_ascii=False, indent=2) + "\n")


def read_study(records_path, experiments_path) -> Study:
    """The study `write_study` saved."""
    data = json.loads(open(experiments_path, encoding="utf-8").read())
    by_file: dict[tuple[str, str], list[Record]] = {}
    with open(records_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_file.setdefault((row["experiment"], row["source"]), []).append(from_row(row))
    exps = []
    for e in data["experiments"]:
        sources = {}
        for label, path in e.pop("sources").items():
            _, title, order = source_of(path)
            sources[label] = RecordFile(label, title, order, path, with_lengths(by_file.get((e["name"], label), [])))
        exps.append(Experiment(**e, sources=sources))
    return Study(data["name"], data["title"], data["profile"], data["commands"], exps)


BRANCH = "study/{name}"


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True)


def git_show(rev: str, path: str) -> str | None:
    shown = git("show", f"{rev}:{path}")
    return None if shown.returncode else shown.stdout


def git_files(rev: str) -> list[str]:
    listed = git("ls-tree", "-r", "--name-only", rev, "--", "data")
    if listed.returncode:
        raise InputError("git", None, None, f"cannot list the files of {rev}: {listed.stderr.strip()}")
    return listed.stdout.splitlines()


def git_base(rev: str) -> str:
    return git("rev-parse", f"{rev}^").stdout.strip()


def dvc_cached():
    """md5 → the text of that file in this repo's DVC cache (None when the cache lacks it)."""
    from pathlib import Path

    from dvc.repo import Repo

    cache = Repo(".").cache.local

    def read(md5: str) -> str | None:
        if not re.fullmatch(r"[0-9a-f]{32}", md5 or ""):
            return None
        try:
            return Path(cache.oid_to_path(md5)).read_text(encoding="utf-8")
        except OSError:
            return None
    return read


def commands_of(profile) -> str:
    """The commands in the profile's leading comment block: its lines `#   music-rm …`, `#   dvc …`, `#   git …`."""
    lines = []
    for line in open(profile, encoding="utf-8").read().splitlines():
        if not line.startswith("#"):
            break
        m = re.fullmatch(r"#\s{2,}((?:music-rm|dvc|git) .*?)\s*", line)
        if m:
            lines.append(m.group(1))
    if not lines:
        raise InputError(str(profile), None, None, "no commands in its leading comment (lines '#   music-rm …', "
                                                   "'#   dvc …')")
    return "\n".join(lines)


def study_revs(study: str) -> dict[str, str]:
    """{name: commit} of the experiments named `<study>-…`: those `dvc exp show` lists (the current commit's), else
    the branches a previous `music-rm results` kept (study/<study>-…), once HEAD has moved on."""
    # this Python's DVC, so the command works without the virtualenv on PATH
    shown = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if shown.returncode:
        raise InputError("dvc exp show", None, None, (shown.stderr.strip().splitlines() or ["failed"])[-1])
    revs = experiment_revs(json.loads(shown.stdout), f"{study}-")
    if not revs:
        listed = git("for-each-ref", "--format=%(refname) %(objectname)", f"refs/heads/{BRANCH.format(name=study)}-*")
        prefix = "refs/heads/" + BRANCH.format(name="")
        revs = {ref[len(prefix):]: rev for ref, rev in (line.split() for line in listed.stdout.splitlines())}
    if not revs:
        raise InputError(study, None, None, f"no DVC experiment named {study}-* (run the study first: the commands "
                                            "at the top of its profile)")
    return revs


def keep(revs: dict[str, str]) -> dict[str, str]:
    """{experiment: branch}: each experiment's commit as a branch, made when missing, refused when it points elsewhere."""
    branches = {}
    for name, rev in revs.items():
        branch = BRANCH.format(name=name)
        current = git("rev-parse", "--verify", "-q", f"refs/heads/{branch}").stdout.strip()
        if not current:
            made = git("branch", branch, rev)
            if made.returncode:
                raise InputError("git", None, None, f"cannot make branch {branch}: {made.stderr.strip()}")
        elif current != rev:
            raise InputError(branch, None, None, f"points to {current[:12]}, not to experiment {name}'s "
                             f"{rev[:12]}: rename the experiment, or delete the branch (git branch -D {branch})")
        branches[name] = branch
    return branches


def checkout_roots(profile, exps: list[Experiment]) -> set[str]:
    """The checkout folders the profile's ${REPO} stood for in the experiments' params (`music-rm profile` writes
    absolute paths), so that the study's files name them as the profile does wherever the study ran."""
    roots = set()

    def walk(template, value):
        if isinstance(template, dict) and isinstance(value, dict):
            for key, inner in template.items():
                walk(inner, value.get(key))
        elif isinstance(template, str) and isinstance(value, str) and "${REPO}" in template:
            m = re.fullmatch(re.escape(template).replace(re.escape("${REPO}"), "(.+?)"), value)
            roots.update(m.groups() if m else ())

    template = yaml.safe_load(open(profile, encoding="utf-8").read())
    for e in exps:
        walk(template, e.params)
    return roots
