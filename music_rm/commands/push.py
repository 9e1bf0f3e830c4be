"""Share this clone's finished stages through the DVC remote, so another machine restores them instead of running
them (docs/cluster.md, Experiments on several machines).

    music-rm push            # on the machine that ran them (make push)
    dvc fetch --run-cache && dvc repro --pull      # on the other
"""
import click

from ..core.cli import clean_errors
from ..core.run_cache import push_run_cache


@click.command("push")
@click.option("-r", "--remote", default=None, help="The DVC remote (default: the repo's default remote).")
@clean_errors
def main(remote):
    """`dvc push --run-cache`, and the `cache: false` outputs (metrics, summaries) the run cache needs, which it leaves."""
    pushed, uncached = push_run_cache(remote)
    click.echo(f"{pushed} files and the run cache pushed by DVC, then {uncached} `cache: false` outputs of the run cache")
