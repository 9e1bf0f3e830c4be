"""Stage fetch: preference data in one schema, split train/test by a hash of the prompt."""
from dataclasses import asdict
from pathlib import Path

import click

from music_rm.cli import clean_errors
from music_rm.io import write_json, write_jsonl
from music_rm.params import section
from music_rm.sources import fetch
from music_rm.tracking import numeric, stage_run


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--out", default="data/fetch", show_default=True, type=click.Path(path_type=Path))
@clean_errors
def main(params_path, out):
    p = section("fetch", params_path)
    with stage_run("fetch", {"fetch": asdict(p)}, inputs=[p.path] if p.source == "path" else [],
                   params_path=params_path) as mlflow:
        train, test, summary = fetch(p)
        write_jsonl(out / "train.jsonl", train)
        write_jsonl(out / "test.jsonl", test)
        write_json(out / "summary.json", summary)
        mlflow.log_metrics(numeric({k: summary[k] for k in ("rows_read", "rows_kept", "skipped", "train", "test")}))
        mlflow.log_dict(summary, "summary.json")
    click.echo(f"fetch: {summary['rows_kept']}/{summary['rows_read']} rows kept from {summary['origin']} "
               f"({summary['skipped']} skipped), {summary['train']} train / {summary['test']} test, "
               f"{summary['multi_turn']} multi-turn")


if __name__ == "__main__":
    main()
