"""Stage eval: every reward-model variant on held-out original pairs and held-out MUSIC pairs at every K."""
import tempfile
from dataclasses import asdict
from pathlib import Path

import click

from music_rm.cli import clean_errors
from music_rm.conversation import read_pairs
from music_rm.evaluate import (accuracy_by_k_plot, comparison_table, evaluate_variants, margin_histogram_plot,
                               music_suites)
from music_rm.io import atomic_path, read_jsonl, write_json, write_text
from music_rm.params import load_params, section
from music_rm.report import html_report
from music_rm.tracking import numeric, stage_run

INTRO = ("Pairwise accuracy: share of held-out pairs whose chosen conversation gets the higher reward, with a "
         "95% percentile-bootstrap interval and n. original: held-out seed pairs; music: held-out MUSIC pairs at "
         "the trained K (contrast.turns); music_kK: the same trees cut after K turns.")


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--models", default="models/rm", show_default=True, type=click.Path(path_type=Path))
@click.option("--original", default="data/fetch/test.jsonl", show_default=True, type=click.Path(path_type=Path))
@click.option("--music", default="data/contrast/test.jsonl", show_default=True, type=click.Path(path_type=Path))
@click.option("--trees", default="data/simulate/trees.jsonl", show_default=True, type=click.Path(path_type=Path))
@click.option("--out", default="data/eval", show_default=True, type=click.Path(path_type=Path))
@clean_errors
def main(params_path, models, original, music, trees, out):
    p = section("eval", params_path)
    variants = section("train", params_path).variants
    # eval's run carries every section, so runs of different experiments compare side by side in MLflow
    with stage_run("eval", {**load_params(params_path), "eval": asdict(p)}, params_path=params_path,
                   inputs=[models, original, music, trees]) as mlflow:
        test_trees = [t for t in read_jsonl(trees) if t["split"] == "test"]
        suites = {"original": read_pairs(original), "music": read_pairs(music), **music_suites(test_trees)}
        results, margins = evaluate_variants({v: str(models / v) for v in variants}, suites, p.batch_size,
                                             p.bootstrap_resamples, p.seed)
        table = comparison_table(results)
        with tempfile.TemporaryDirectory() as tmp:
            by_k, hist = Path(tmp) / "accuracy_by_k.png", Path(tmp) / "margins.png"
            accuracy_by_k_plot(results, by_k)
            margin_histogram_plot(margins, "music", hist)
            report = html_report("MUSIC reward models: held-out evaluation", [
                ("Pairwise accuracy", "text", INTRO), ("By variant and suite", "table", table),
                ("Accuracy by contrasted turns K", "png", by_k), ("Reward margins on held-out MUSIC pairs", "png", hist)])
            for name, src in (("accuracy_by_k.png", by_k), ("margins.png", hist)):
                with atomic_path(out / name) as dst:
                    dst.write_bytes(src.read_bytes())
        write_json(out / "metrics.json", results)
        write_text(out / "report.md", f"# Held-out pairwise accuracy\n\n{INTRO}\n\n{table}\n\n"
                                      "![accuracy by K](accuracy_by_k.png)\n\n![margins](margins.png)\n")
        write_text(out / "report.html", report)
        mlflow.log_metrics(numeric(results))
        for name in ("report.md", "report.html", "accuracy_by_k.png", "margins.png"):
            mlflow.log_artifact(str(out / name))
    click.echo("eval: held-out pairwise accuracy, 95% bootstrap CI, n\n" + table)


if __name__ == "__main__":
    main()
