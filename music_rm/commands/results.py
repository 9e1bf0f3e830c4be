"""Turn a study's DVC experiments into its results page, computed from the per-item records they wrote.

    music-rm results cpu-study                 # the experiments named cpu-study-*, run from profiles/cpu-study.yaml
    music-rm results cpu-study --from-files    # the page again from the study's committed files, no DVC needed

Writes results/<study>.md, the records it used (results/<study>-records.csv), everything else it shows
(results/<study>-experiments.json) and two PNG plots beside it, and keeps each experiment's commit as the git
branch study/<experiment> (what `dvc exp branch` makes), so the commits the page cites stay in the repo: once HEAD
moves on (`dvc exp show` lists the current commit's experiments only), a rerun reads the experiments from those
branches. The page's "How it was run" is the command block at the top of the study's profile. The same
experiments give the same bytes.
"""
from pathlib import Path

import click

from ..core.cli import clean_errors
from ..core.errors import InputError
from ..core.io import atomic_path, write_text
from ..evaluation import plots
from ..evaluation.study.collect import (Study, checkout_roots, collect, commands_of, dvc_cached, git_base, git_files,
                                        git_show, keep, read_study, study_revs, write_study)
from ..evaluation.study.page import render
from ..evaluation.study.tables import accuracy_rows, difference_panels, study_tables


@click.command("results")
@click.argument("study")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="The page to write (default results/<STUDY>.md; its records and plots go beside it).")
@click.option("--profile", type=click.Path(path_type=Path), default=None,
              help="The study's profile, whose leading comment holds its commands (default profiles/<STUDY>.yaml).")
@click.option("--title", default=None, help="The page's title (default: the study's name).")
@click.option("--from-files", is_flag=True,
              help="Render the page and plots from the study's records and experiments files beside it (as a previous "
                   "run wrote them), without reading git or DVC.")
@clean_errors
def main(study, out, profile, title, from_files):
    """Write the results page of the experiments named STUDY-* from the records they hold."""
    out = out or Path("results") / f"{study}.md"
    files = {"records": f"{out.stem}-records.csv", "experiments": f"{out.stem}-experiments.json",
             "by_k": f"{out.stem}-accuracy-by-k.png", "differences": f"{out.stem}-differences.png"}
    if from_files:
        for name in ("records", "experiments"):
            if not (out.parent / files[name]).is_file():
                raise InputError(out.parent / files[name], None, None, "no such file (run `music-rm results` without "
                                                                      "--from-files first)")
    else:
        profile = profile or Path("profiles") / f"{study}.yaml"
        if not profile.is_file():
            raise InputError(str(profile), None, None, "no such profile (the page shows the commands in its header; "
                                                       "name it with --profile)")
        revs = study_revs(study)
        exps = collect(revs, git_show, git_files, dvc_cached(), git_base, keep(revs))
        write_study(Study(study, title or f"Results: {study}", profile.as_posix(), commands_of(profile), exps),
                    out.parent / files["records"], out.parent / files["experiments"],
                    checkout_roots(profile, exps) | {str(Path.cwd().resolve())})
    written = read_study(out.parent / files["records"], out.parent / files["experiments"])
    tables = study_tables(written.experiments)
    with atomic_path(out.parent / files["by_k"]) as tmp:
        plots.accuracy_by_k(accuracy_rows(written.experiments, tables), tmp, "K of the held-out MUSIC pairs",
                            "Held-out MUSIC pairs, by K (95% bootstrap CI)", size=(6.5, 3.6), spread=0.05,
                            legend={"fontsize": 7, "loc": "lower right"})
    with atomic_path(out.parent / files["differences"]) as tmp:
        plots.differences(difference_panels(written.experiments, tables), tmp)
    write_text(out, render(written, tables, files))
    names = ", ".join(e.name for e in written.experiments)
    click.echo(f"results: {len(written.experiments)} experiments ({names}) → {out}, {out.parent / files['records']}, "
               f"{out.parent / files['experiments']}; commits kept as "
               f"{', '.join(e.branch for e in written.experiments)}")
