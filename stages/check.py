"""Stage check: params.yaml, whole, and the inputs it names, checked before DVC touches any stage's outputs.

Every other stage depends on the file this stage writes, so DVC runs it first and stops at a refusal, before it
removes the outputs of the stage that would have refused (DVC removes a stage's outputs before running it). The
file's content never changes, so a change that passes reruns no stage because of it.
"""
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.check import check_inputs
from music_rm.core.cli import HELP, clean_errors, logged, params_option
from music_rm.core.io import write_text
from music_rm.core.params import load_params

PASSED = ("params.yaml passed the check stage (stages/check.py). Every stage depends on this file, so DVC runs the "
          "check before any stage; its content never changes, so passing the check reruns no stage.\n")


@click.command(context_settings=HELP)
@params_option
@click.option("--out", default=paths.CHECKED, show_default=True, type=click.Path(path_type=Path),
              help="The file written when the check passes.")
@clean_errors
@logged
def main(params_path, out):
    """Check every key of params.yaml and the inputs it names; refuse in one line naming the param."""
    check_inputs(load_params(params_path), params_path)
    write_text(out, PASSED)
    click.echo(f"check: {params_path} and the inputs it names are fine")


if __name__ == "__main__":
    main()
