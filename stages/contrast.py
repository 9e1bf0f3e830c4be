"""Stage contrast: preference pairs cut from the trees after contrast.turns assistant turns."""
from dataclasses import asdict
from pathlib import Path

import click

from music_rm.cli import clean_errors
from music_rm.contrast import assemble
from music_rm.io import read_jsonl, write_json, write_jsonl
from music_rm.params import section
from music_rm.tracking import numeric, stage_run


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--trees", default="data/simulate/trees.jsonl", show_default=True, type=click.Path(path_type=Path))
@click.option("--original", default="data/fetch/train.jsonl", show_default=True, type=click.Path(path_type=Path))
@click.option("--out", default="data/contrast", show_default=True, type=click.Path(path_type=Path))
@clean_errors
def main(params_path, trees, original, out):
    p = section("contrast", params_path)
    with stage_run("contrast", {"contrast": asdict(p)}, inputs=[trees, original], params_path=params_path) as mlflow:
        sets = assemble(read_jsonl(original), read_jsonl(trees), p.turns, p.seed)
        for name, rows in sets.items():
            write_jsonl(out / f"{name}.jsonl", rows)
        summary = {"k": p.turns, **{f"pairs_{name}": len(rows) for name, rows in sets.items()}}
        write_json(out / "summary.json", summary)
        mlflow.log_metrics(numeric(summary))
    click.echo(f"contrast: K={p.turns}: {summary['pairs_train']} train / {summary['pairs_test']} test MUSIC pairs, "
               f"{summary['pairs_train_with_original']} pairs with the originals")


if __name__ == "__main__":
    main()
