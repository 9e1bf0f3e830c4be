"""Turn a study's DVC experiments into its results page (results/<study>.md and two PNG plots).

    music-rm results cpu-study --out results/cpu-study.md     # the experiments named cpu-study-*

Finds the experiments with `dvc exp show --json` and reads their params, metrics and dvc.lock from git; the same experiments give the same files.
"""
import json
import subprocess
import sys
from pathlib import Path

import click

from ..core.cli import clean_errors
from ..core.errors import InputError
from ..core.io import atomic_path, write_text
from ..evaluation.study import accuracy_by_k_plot, differences_plot, experiments, heldout_tables, results_markdown

COMMANDS = """music-rm profile profiles/{study}.yaml
dvc exp run --queue -n {study}-k1 -S contrast.turns=1
dvc exp run --queue -n {study}-k2 -S contrast.turns=2
dvc exp run --queue -n {study}-k3 -S contrast.turns=3
dvc exp run --run-all
music-rm results {study} --out results/{study}.md
git checkout params.yaml"""


def git_show(rev: str, path: str) -> str:
    shown = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    if shown.returncode:
        raise InputError(path, None, None, f"not in git at {rev}")
    return shown.stdout


@click.command("results")
@click.argument("study")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="The page to write (default results/<STUDY>.md; its plots go beside it).")
@click.option("--title", default=None, help="The page's title (default: the study's name).")
@clean_errors
def main(study, out, title):
    """Write the results page of the experiments named STUDY-* (one per contrast.turns)."""
    out = out or Path("results") / f"{study}.md"
    # this Python's DVC, so the command works without the virtualenv on PATH
    shown = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if shown.returncode:
        raise InputError("dvc exp show", None, None, shown.stderr.strip().splitlines()[-1])
    exps = experiments(json.loads(shown.stdout), f"{study}-", git_show)
    if not exps:
        raise InputError(study, None, None, f"no DVC experiment named {study}-* (run the study first: the commands at the top of its profile)")
    plots = {"by_k": f"{out.stem}-accuracy-by-k.png", "differences": f"{out.stem}-differences.png"}
    _, _, rows = heldout_tables(exps)
    with atomic_path(out.parent / plots["by_k"]) as tmp:
        accuracy_by_k_plot(rows, tmp)
    with atomic_path(out.parent / plots["differences"]) as tmp:
        differences_plot(exps, tmp)
    page = results_markdown(exps, title or f"Results: {study}", COMMANDS.format(study=study), plots)
    # profiles write absolute paths into params.yaml; the page names them as the profile does, from ${REPO}
    write_text(out, page.replace(str(Path.cwd().resolve()), "${REPO}"))
    click.echo(f"results: {len(exps)} experiments ({', '.join(e['name'] for e in exps)}) → {out}")
