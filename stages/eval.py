"""Stage eval: every reward-model variant on held-out original pairs and held-out MUSIC pairs."""
from dataclasses import asdict
from pathlib import Path

import click

from music_rm.cli import clean_errors
from music_rm.evaluate import comparison_table, evaluate_variants
from music_rm.conversation import read_pairs
from music_rm.io import write_json, write_text
from music_rm.params import load_params, section
from music_rm.tracking import numeric, stage_run


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--models", default="models/rm", show_default=True, type=click.Path(path_type=Path))
@click.option("--original", default="data/fetch/test.jsonl", show_default=True, type=click.Path(path_type=Path))
@click.option("--music", default="data/contrast/test.jsonl", show_default=True, type=click.Path(path_type=Path))
@click.option("--out", default="data/eval", show_default=True, type=click.Path(path_type=Path))
@clean_errors
def main(params_path, models, original, music, out):
    p = section("eval", params_path)
    variants = section("train", params_path).variants
    # eval's run carries every section, so runs of different experiments compare side by side in MLflow
    with stage_run("eval", {**load_params(params_path), "eval": asdict(p)}, params_path=params_path,
                   inputs=[models, original, music]) as mlflow:
        suites = {"original": read_pairs(original), "music": read_pairs(music)}
        results = evaluate_variants({v: str(models / v) for v in variants}, suites, p.batch_size)
        table = comparison_table(results)
        write_json(out / "metrics.json", results)
        write_text(out / "report.md", "# Held-out pairwise accuracy\n\n" + table + "\n")
        mlflow.log_metrics(numeric(results))
        mlflow.log_text(table, "report.md")
    click.echo("eval: held-out pairwise accuracy\n" + table)


if __name__ == "__main__":
    main()
