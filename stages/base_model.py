"""Stage base_model: the model that simulates and that every reward model starts from."""
from dataclasses import asdict
from pathlib import Path

import click

from music_rm.base_model import prepare
from music_rm.cli import clean_errors
from music_rm.io import atomic_path, write_json
from music_rm.params import section
from music_rm.tracking import stage_run


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--out", default="models/base", show_default=True, type=click.Path(path_type=Path))
@clean_errors
def main(params_path, out):
    p = section("base", params_path)
    with stage_run("base_model", {"base": asdict(p)}, params_path=params_path) as mlflow:
        with atomic_path(out) as tmp:
            provenance = prepare(p, tmp)
            write_json(tmp / "provenance.json", provenance)
        mlflow.log_dict(provenance, "provenance.json")
    click.echo(f"base_model: {p.source} model ready in {out} ({provenance})")


if __name__ == "__main__":
    main()
