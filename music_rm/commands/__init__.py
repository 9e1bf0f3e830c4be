"""`music-rm`: one console script with a subcommand per tool (also `python -m music_rm`)."""
import click

from .. import __version__
from ..core.cli import HELP
from . import compare, deps, export, exps, plan, profile, push, results, schema, score, serve, tracking_server


@click.group(context_settings=HELP)
@click.version_option(__version__, "-V", "--version", prog_name="music-rm")
def main():
    """MUSIC reward models: tools around the DVC pipeline (`dvc repro` runs the pipeline itself)."""


for command in (profile.main, plan.main, score.main, export.main, compare.main, results.main, schema.main,
                deps.main, exps.main, serve.main, tracking_server.main, push.main):
    main.add_command(command)
