"""Stage check_params: params.yaml checked whole, before any other stage runs. DVC interpolates params into stage
names, paths and the shell commands it runs (`--variant ${item.variant}`), so a bad name must be refused before
DVC runs any command: every other stage depends on this stage's output, so DVC runs it first and stops when it
fails. The output's text never changes, so a params change reruns only the stages that read the params changed."""
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, params_option
from music_rm.core.io import write_text
from music_rm.core.params import load_params

# none through Params.for_stage: the stage reads params.yaml whole, as a file it depends on (dvc.yaml)
PARAMS = ()


@click.command(context_settings=HELP)
@params_option
@click.option("--out", default=paths.CHECKED_PARAMS, show_default=True, type=click.Path(path_type=Path),
              help="The file that stands for a checked params.yaml (its text is always the same).")
@clean_errors
def main(params_path, out):
    """Check params.yaml whole (types, ranges, names) before DVC runs any other stage's command."""
    load_params(params_path, packages=False)
    write_text(out, "checked whole by the params model (music_rm/core/params.py)\n")
    click.echo(f"check_params: {params_path} is valid")


if __name__ == "__main__":
    main()
