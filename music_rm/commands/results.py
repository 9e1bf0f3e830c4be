"""Turn a study's DVC experiments into its results page, computed from the per-item records they wrote.

    music-rm results cpu-study       # the experiments named cpu-study-*, run from profiles/cpu-study.yaml

Writes results/<study>.md, the records it used (results/<study>-records.csv) and two PNG plots beside it, and keeps
each experiment's commit as the git branch study/<experiment> (what `dvc exp branch` makes), so the commits the
page cites stay in the repo: once HEAD moves on (`dvc exp show` lists the current commit's experiments only), a
rerun reads the experiments from those branches. The page's "How it was run" is the command block at the top of the study's profile.
The same experiments give the same bytes.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import click
import yaml

from ..core.cli import clean_errors
from ..core.errors import InputError
from ..core.io import atomic_path, write_text
from ..evaluation.study import (accuracy_by_k_plot, differences_plot, experiments, heldout_accuracy_rows,
                                results_markdown, study_records_csv, study_tables)

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


def dvc_cached():
    """md5 → the text of that file in this repo's DVC cache (None when the cache lacks it)."""
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


def commands_of(profile: Path) -> str:
    """The commands in the profile's leading comment block: its lines `#   music-rm …`, `#   dvc …`, `#   git …`."""
    lines = []
    for line in profile.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        m = re.fullmatch(r"#\s{2,}((?:music-rm|dvc|git) .*?)\s*", line)
        if m:
            lines.append(m.group(1))
    if not lines:
        raise InputError(str(profile), None, None, "no commands in its leading comment (lines '#   music-rm …', "
                                                   "'#   dvc …')")
    return "\n".join(lines)


def kept_branches(study: str) -> list[dict]:
    """The branches study/<study>-… as `dvc exp show --json` would list their experiments."""
    listed = git("for-each-ref", "--format=%(refname) %(objectname)", f"refs/heads/{BRANCH.format(name=study)}-*")
    prefix = "refs/heads/" + BRANCH.format(name="")
    return [{"name": ref[len(prefix):], "data": {"rev": rev}}
            for ref, rev in (line.split() for line in listed.stdout.splitlines())]


def checkout_roots(profile: Path, exps: list[dict]) -> set[str]:
    """The checkout folders the profile's ${REPO} stood for in the experiments' params (`music-rm profile` writes
    absolute paths), so that the page names them as the profile does wherever the study ran."""
    roots = set()

    def walk(template, value):
        if isinstance(template, dict) and isinstance(value, dict):
            for key, inner in template.items():
                walk(inner, value.get(key))
        elif isinstance(template, str) and isinstance(value, str) and "${REPO}" in template:
            m = re.fullmatch(re.escape(template).replace(re.escape("${REPO}"), "(.+?)"), value)
            roots.update(m.groups() if m else ())

    template = yaml.safe_load(profile.read_text(encoding="utf-8"))
    for e in exps:
        walk(template, e["params"])
    return roots


def keep(exps: list[dict]) -> dict:
    """{experiment: branch}: each experiment's commit as a branch, made when missing, refused when it points elsewhere."""
    branches = {}
    for e in exps:
        branch = BRANCH.format(name=e["name"])
        current = git("rev-parse", "--verify", "-q", f"refs/heads/{branch}").stdout.strip()
        if not current:
            made = git("branch", branch, e["rev"])
            if made.returncode:
                raise InputError("git", None, None, f"cannot make branch {branch}: {made.stderr.strip()}")
        elif current != e["rev"]:
            raise InputError(branch, None, None, f"points to {current[:12]}, not to experiment {e['name']}'s "
                             f"{e['rev'][:12]}: rename the experiment, or delete the branch (git branch -D {branch})")
        branches[e["name"]] = branch
    return branches


@click.command("results")
@click.argument("study")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="The page to write (default results/<STUDY>.md; its records and plots go beside it).")
@click.option("--profile", type=click.Path(path_type=Path), default=None,
              help="The study's profile, whose leading comment holds its commands (default profiles/<STUDY>.yaml).")
@click.option("--title", default=None, help="The page's title (default: the study's name).")
@clean_errors
def main(study, out, profile, title):
    """Write the results page of the experiments named STUDY-* from the records they hold."""
    out = out or Path("results") / f"{study}.md"
    profile = profile or Path("profiles") / f"{study}.yaml"
    if not profile.is_file():
        raise InputError(str(profile), None, None, "no such profile (the page shows the commands in its header; "
                                                   "name it with --profile)")
    commands = commands_of(profile)
    # this Python's DVC, so the command works without the virtualenv on PATH
    shown = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if shown.returncode:
        raise InputError("dvc exp show", None, None, (shown.stderr.strip().splitlines() or ["failed"])[-1])
    exps = experiments(json.loads(shown.stdout), f"{study}-", git_show, git_files, dvc_cached())
    if not exps:
        # `dvc exp show` lists the experiments of the current commit only: once the page is committed, its
        # experiments are read from the branches a previous run kept
        exps = experiments(kept_branches(study), f"{study}-", git_show, git_files, dvc_cached())
    if not exps:
        raise InputError(study, None, None, f"no DVC experiment named {study}-* (run the study first: the commands at the top of its profile)")
    for e in exps:
        if not e["records"]:
            raise InputError(e["name"], None, None, "holds no record file (data/eval/records.csv): it ran before "
                                                    "the suites wrote per-item records")
        e["base"] = git("rev-parse", f"{e['rev']}^").stdout.strip()
    tables = study_tables(exps)
    files = {"records": f"{out.stem}-records.csv", "by_k": f"{out.stem}-accuracy-by-k.png",
             "differences": f"{out.stem}-differences.png", "profile": profile.as_posix()}
    branches = keep(exps)
    write_text(out.parent / files["records"], study_records_csv(exps))
    with atomic_path(out.parent / files["by_k"]) as tmp:
        accuracy_by_k_plot(heldout_accuracy_rows(exps, tables), tmp)
    with atomic_path(out.parent / files["differences"]) as tmp:
        differences_plot(exps, tables, tmp)
    page = results_markdown(exps, tables, title or f"Results: {study}", commands, branches, files)
    # profiles write absolute paths into params.yaml; the page names them as the profile does, from ${REPO}
    for root in sorted(checkout_roots(profile, exps) | {str(Path.cwd().resolve())}, key=len, reverse=True):
        page = page.replace(root, "${REPO}")
    write_text(out, page)
    click.echo(f"results: {len(exps)} experiments ({', '.join(e['name'] for e in exps)}) → {out}, "
               f"{out.parent / files['records']}; commits kept as {', '.join(branches.values())}")
