"""The MLflow tracking server every clone logs to, on PostgreSQL (docs/cluster.md, Experiments on several machines).

    music-rm tracking-server start --dir /srv/music-rm-tracking --host 0.0.0.0 --port 5000
    export MLFLOW_TRACKING_URI=http://<this host>:5000        # in every clone, on every machine
    music-rm tracking-server stop --dir /srv/music-rm-tracking
"""
from pathlib import Path

import click

from ..core.cli import clean_errors
from ..core.tracking_server import start, stop

folder_option = click.option("--dir", "folder", required=True, type=click.Path(file_okay=False, path_type=Path),
                             help="The server's folder: its PostgreSQL cluster, the artifacts and logs.")


@click.group("tracking-server")
def main():
    """Start or stop the MLflow server (PostgreSQL store) that clones on several machines log to."""


@main.command("start")
@folder_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address the MLflow server listens on (0.0.0.0: every interface, for other machines).")
@click.option("--port", default=5000, show_default=True, help="The MLflow server's port.")
@clean_errors
def start_command(folder, host, port):
    """Start PostgreSQL and the MLflow server (nothing new if they already run); print what to export."""
    uri = start(folder, host, port)
    click.echo(f"MLflow server on PostgreSQL, from {folder.resolve()}; in every clone:")
    click.echo(f"export MLFLOW_TRACKING_URI={uri}")


@main.command("stop")
@folder_option
@clean_errors
def stop_command(folder):
    """Stop the MLflow server and PostgreSQL started from the folder."""
    click.echo(f"stopped the MLflow server and PostgreSQL of {folder.resolve()}" if stop(folder)
               else f"no tracking server runs from {folder.resolve()}")
