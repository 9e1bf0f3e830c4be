"""Stage eval: every reward-model variant on held-out original pairs and held-out MUSIC pairs at every K."""
import tempfile
from pathlib import Path

import click

from music_rm.core.cli import clean_errors, logged, models_option, params_option
from music_rm.core.io import atomic_path, read_jsonl, write_json, write_text
from music_rm.core.params import load_params
from music_rm.core.tracking import numeric, stage_run
from music_rm.data.conversation import read_pairs
from music_rm.evaluation.heldout import (accuracy_by_k_plot, comparison_table, evaluate_variants,
                                         margin_histogram_plot, music_suites, read_curve, training_curves_plot)
from music_rm.evaluation.report import html_report


def intro(trained_k: int) -> str:
    return ("Pairwise accuracy: share of held-out pairs whose chosen conversation gets the higher reward, with a "
            "95% percentile-bootstrap interval and n. original: held-out seed pairs; music_kK: held-out MUSIC pairs "
            f"cut after K turns (the music variant was trained at K = {trained_k}, contrast.turns).")


@click.command()
@params_option
@models_option
@click.option("--original", default="data/fetch/test.jsonl", show_default=True, type=click.Path(path_type=Path),
              help="Held-out original pairs.")
@click.option("--music", default="data/contrast/test_by_k.jsonl", show_default=True, type=click.Path(path_type=Path),
              help="Held-out MUSIC pairs at every K (contrast's output).")
@click.option("--curves", default="data/train", show_default=True, type=click.Path(path_type=Path),
              help="Parent folder of each variant's training curve.csv.")
@click.option("--out", default="data/eval", show_default=True, type=click.Path(path_type=Path),
              help="Folder for metrics.json, the reports and the plots.")
@clean_errors
@logged
def main(params_path, models, original, music, curves, out):
    """Score every variant on the held-out suites; tables, plots and an offline HTML report."""
    params = load_params(params_path)
    p, k = params.eval, params.contrast.turns
    # eval's run carries every section, so runs of different experiments compare side by side in MLflow
    with stage_run("eval", params, params.model_dump(mode="json"), inputs=[models, original, music],
                   environment_file=out / "environment.json") as mlflow:
        suites = {"original": read_pairs(original), **music_suites(read_jsonl(music))}
        results, margins = evaluate_variants({v: str(models / v) for v in params.train.variants}, suites,
                                             p.batch_size, p.max_length, p.bootstrap_resamples, p.seed)
        table = comparison_table(results)
        with tempfile.TemporaryDirectory() as tmp:
            by_k, hist, train = Path(tmp) / "accuracy_by_k.png", Path(tmp) / "margins.png", Path(tmp) / "training.png"
            accuracy_by_k_plot(results, by_k)
            margin_histogram_plot(margins, f"music_k{k}", hist)
            training_curves_plot({v: read_curve(curves / v / "curve.csv") for v in params.train.variants}, train)
            report = html_report("MUSIC reward models: held-out evaluation", [
                ("Pairwise accuracy", "text", intro(k)), ("By variant and suite", "table", table),
                ("Accuracy by contrasted turns K", "png", by_k),
                (f"Reward margins on held-out MUSIC pairs at K = {k}", "png", hist),
                ("Training curves", "png", train)])
            for name, src in (("accuracy_by_k.png", by_k), ("margins.png", hist), ("training_curves.png", train)):
                with atomic_path(out / name) as dst:
                    dst.write_bytes(src.read_bytes())
        write_json(out / "metrics.json", results)
        write_text(out / "report.md", f"# Held-out pairwise accuracy\n\n{intro(k)}\n\n{table}\n\n"
                                      "![accuracy by K](accuracy_by_k.png)\n\n![margins](margins.png)\n\n"
                                      "![training curves](training_curves.png)\n")
        write_text(out / "report.html", report)
        mlflow.log_metrics(numeric(results))
        for name in ("report.md", "report.html", "accuracy_by_k.png", "margins.png", "training_curves.png"):
            mlflow.log_artifact(str(out / name))
    click.echo("eval: held-out pairwise accuracy, 95% bootstrap CI, n\n" + table)


if __name__ == "__main__":
    main()
