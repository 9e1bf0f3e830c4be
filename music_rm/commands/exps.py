"""What changed between the DVC experiments of this repo and what it did, one row per experiment.

    music-rm exps              # the params that differ and every variant's held-out accuracies, 120 columns
"""
import json
import shutil
import subprocess
import sys

import click

from ..core.cli import clean_errors
from ..core.errors import InputError
from ..core.tracking import reap_killed_runs
from ..evaluation.experiments import experiment_rows, experiment_table


@click.command("exps")
@click.option("--width", type=int, default=None,
              help="Columns to fit (default: the terminal's width, at most 120).")
@clean_errors
def main(width):
    """Show the experiments side by side: the params that differ and the held-out accuracies."""
    for line in reap_killed_runs():  # so the MLflow UI shows no dead run as running either
        click.echo(line, err=True)
    # this Python's DVC, so the command works without the virtualenv on PATH
    shown = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if shown.returncode:
        raise InputError("dvc exp show", None, None, (shown.stderr.strip().splitlines() or ["failed"])[-1])
    rows = experiment_rows(json.loads(shown.stdout))
    click.echo(experiment_table(rows, width or min(120, shutil.get_terminal_size((120, 24)).columns)))
