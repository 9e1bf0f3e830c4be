"""Stage eval: every reward-model variant on held-out original pairs and held-out MUSIC pairs at every K."""
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, models_option, params_option
from music_rm.core.io import read_jsonl
from music_rm.core.outputs import committed_outputs
from music_rm.core.params import load_params
from music_rm.core.tracking import numeric, stage_run
from music_rm.data.conversation import read_pairs
from music_rm.evaluation.heldout import (PLOTS, differences, evaluate_variants, longer_answer_wins, music_suites,
                                         write_outputs)
from music_rm.reward.curve import read_curve


@click.command(context_settings=HELP)
@params_option
@models_option
@click.option("--original", default=f"{paths.FETCH}/test.jsonl", show_default=True, type=click.Path(path_type=Path),
              help="Held-out original pairs.")
@click.option("--music", default=f"{paths.CONTRAST}/test_by_k.jsonl", show_default=True,
              type=click.Path(path_type=Path), help="Held-out MUSIC pairs at every K (contrast's output).")
@click.option("--curves", default=paths.TRAIN_REPORTS, show_default=True, type=click.Path(path_type=Path),
              help="Parent folder of each variant's training curve.csv.")
@click.option("--out", default=paths.EVAL, show_default=True, type=click.Path(path_type=Path),
              help="Folder for metrics.json, the reports and the plots.")
@clean_errors
@logged
def main(params_path, models, original, music, curves, out):
    """Score every variant on the held-out suites; tables, plots and an offline HTML report."""
    params = load_params(params_path)
    p, k = params.eval, params.contrast.turns
    # eval's run carries every section, so runs of different experiments compare side by side in MLflow
    with committed_outputs(out) as out, \
         stage_run("eval", params, params.model_dump(mode="json"), inputs=[models, original, music],
                   environment_file=out / "environment.json") as mlflow:
        suites = {"original": read_pairs(original), **music_suites(read_jsonl(music))}
        results, margins, rewards = evaluate_variants({v: str(models / v) for v in params.train.variants}, suites,
                                                      p.batch_size, p.max_length, p.bootstrap_resamples, p.seed,
                                                      p.cpu_dtype, p.cache)
        baseline = {suite: longer_answer_wins(pairs, p.bootstrap_resamples, p.seed) for suite, pairs in suites.items()}
        diffs = differences(margins, p.compare, p.bootstrap_resamples, p.seed)
        metrics, table = write_outputs(out, results, margins, baseline, diffs,
                                       {v: read_curve(curves / v / "curve.csv") for v in params.train.variants}, k,
                                       rewards)
        mlflow.log_metrics(numeric(metrics))
        for name in ("report.md", "report.html", *PLOTS):
            mlflow.log_artifact(str(out / name))
    click.echo("eval: held-out pairwise accuracy, 95% bootstrap CI, n\n" + table)


if __name__ == "__main__":
    main()
