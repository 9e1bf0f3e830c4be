"""Stage fetch: preference data in one schema, split train/test by a hash of the prompt."""
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, params_option
from music_rm.core.io import write_json, write_jsonl
from music_rm.core.outputs import committed_outputs
from music_rm.core.params import load_params
from music_rm.core.tracking import log_results, stage_run
from music_rm.data.sources import HEADLINE, fetch

# The params this stage reads, all it can read (Params.for_stage) and its params in dvc.yaml (`make deps`)
PARAMS = ("fetch",)


@click.command(context_settings=HELP)
@params_option
@click.option("--out", default=paths.FETCH, show_default=True, type=click.Path(path_type=Path),
              help="Folder for train.jsonl, test.jsonl and summary.json.")
@clean_errors
@logged
def main(params_path, out):
    """Read the preference source `fetch` names, check every row, split by prompt."""
    params = load_params(params_path).for_stage(PARAMS)
    p = params.fetch
    with committed_outputs(out) as out, \
         stage_run("fetch", params, inputs=[p.path] if p.source == "path" else [],
                   environment_file=out / "environment.json") as mlflow:
        train, test, summary = fetch(p)
        write_jsonl(out / "train.jsonl", train)
        write_jsonl(out / "test.jsonl", test)
        write_json(out / "summary.json", summary)
        log_results({k: summary[k] for k in ("rows_read", "rows_kept", "skipped", "train", "test")},
                    {k: summary[k] for k in HEADLINE})
        mlflow.log_dict(summary, "summary.json")
    click.echo(f"fetch: {summary['rows_kept']}/{summary['rows_read']} rows kept from {summary['origin']} "
               f"({summary['skipped']} skipped), {summary['train']} train / {summary['test']} test, "
               f"{summary['multi_turn']} multi-turn")


if __name__ == "__main__":
    main()
