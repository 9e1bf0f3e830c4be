"""Stage eval: every (variant, seed) reward model on held-out original pairs and held-out MUSIC pairs at every K."""
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, models_option, params_option
from music_rm.core.gpu_slots import on_gpu_slot
from music_rm.core.io import read_jsonl
from music_rm.core.outputs import committed_outputs
from music_rm.core.params import load_params
from music_rm.core.tracking import log_results, stage_run
from music_rm.data.chat_template import load_tokenizer
from music_rm.data.conversation import read_pairs
from music_rm.data.lengths import pairs_truncated
from music_rm.evaluation.heldout import PLOTS, evaluate, headline, music_suites, score_models, write_outputs
from music_rm.reward.curve import read_curve
from music_rm.reward.stale import remove_stale

# The params this stage reads, all it can read (Params.for_stage) and its params in dvc.yaml (`make deps`)
PARAMS = ("eval", "train.variants", "train.seeds", "contrast.turns")


@click.command(context_settings=HELP)
@params_option
@models_option
@click.option("--original", default=f"{paths.FETCH}/test.jsonl", show_default=True, type=click.Path(path_type=Path),
              help="Held-out original pairs.")
@click.option("--music", default=f"{paths.CONTRAST}/test_by_k.jsonl", show_default=True,
              type=click.Path(path_type=Path), help="Held-out MUSIC pairs at every K (contrast's output).")
@click.option("--curves", default=paths.TRAIN_REPORTS, show_default=True, type=click.Path(path_type=Path),
              help="Parent folder of each model's training curve.csv (<variant>/seed-<seed>).")
@click.option("--out", default=paths.EVAL, show_default=True, type=click.Path(path_type=Path),
              help="Folder for records.csv, metrics.json, the reports and the plots.")
@clean_errors
@logged
@on_gpu_slot
def main(params_path, models, original, music, curves, out):
    """Score every variant and training seed on the held-out suites; records, tables, plots and an offline HTML
    report."""
    params = load_params(params_path).for_stage(PARAMS)
    p, k = params.eval, params.contrast.turns
    models_by = [(v, seed) for v in params.train.variants for seed in params.train.seeds]
    with committed_outputs(out) as out, \
         stage_run("eval", params, inputs=[models, original, music],
                   environment_file=out / "environment.json") as mlflow:
        remove_stale(params.train, models, curves)  # what a removed variant or seed left: DVC hashes these folders
        suites = {"original": read_pairs(original), **music_suites(read_jsonl(music))}
        margins, rewards = score_models({m: str(paths.reward_model(models, *m)) for m in models_by}, suites,
                                        p.batch_size, p.max_length, p.cpu_dtype, p.cache)
        records, results = evaluate(suites, margins, p.compare, p.bootstrap_resamples, p.seed)
        curve_files = {m: read_curve(paths.train_reports(curves, *m) / "curve.csv") for m in models_by}
        tokenizer = load_tokenizer(str(paths.reward_model(models, *models_by[0])))  # every variant's: one base model
        truncated = {suite: pairs_truncated(tokenizer, pairs, p.max_length) for suite, pairs in suites.items()}
        metrics, tables = write_outputs(out, records, results, margins, rewards, curve_files, k, p.bootstrap_resamples,
                                        truncated)
        log_results(metrics, headline(metrics), view=True)
        for name in ("records.csv", "report.md", "report.html", *PLOTS):
            mlflow.log_artifact(str(out / name))
    click.echo("eval: held-out pairwise accuracy (mean over training seeds), 95% bootstrap CI over seeds and pairs, "
               "n\n" + tables)


if __name__ == "__main__":
    main()
