"""Stage base_model: the model that simulates and that every reward model starts from."""
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, params_option
from music_rm.core.io import atomic_path, readable_files, write_json
from music_rm.core.outputs import committed_outputs
from music_rm.core.params import load_params
from music_rm.core.tracking import stage_run
from music_rm.data.base_model import prepare

# The params this stage reads, all it can read (Params.for_stage) and its params in dvc.yaml (`make deps`)
PARAMS = ("base",)


@click.command(context_settings=HELP)
@params_option
@click.option("--out", default=paths.BASE_MODEL, show_default=True, type=click.Path(path_type=Path),
              help="The model folder to write.")
@click.option("--environment", default=f"{paths.BASE_MODEL_REPORTS}/environment.json", show_default=True,
              type=click.Path(path_type=Path), help="Where the record of the machine and software goes.")
@clean_errors
@logged
def main(params_path, out, environment):
    """Write the base model (embedded SmolLM2 or a Hub model, per `base`) as a plain HF folder."""
    params = load_params(params_path).for_stage(PARAMS)
    p = params.base
    with committed_outputs(out.parent, environment.parent) as (models, records), \
         stage_run("base_model", params, environment_file=records / environment.name) as mlflow:
        with atomic_path(models / out.name) as tmp:
            provenance = prepare(p, tmp)
            write_json(tmp / "provenance.json", provenance)
            readable_files(tmp)  # the weights as 0644 like the rest (safetensors writes 0600)
        mlflow.log_dict(provenance, "provenance.json")
    click.echo(f"base_model: {p.source} model ready in {out} ({provenance})")


if __name__ == "__main__":
    main()
