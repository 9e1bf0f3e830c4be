"""Stage mt_bench@<source>: every reward-model variant against the MT-Bench human expert votes."""
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, models_option, params_option
from music_rm.core.gpu_slots import on_gpu_slot
from music_rm.core.io import write_json, write_text
from music_rm.core.outputs import committed_outputs
from music_rm.core.params import load_params
from music_rm.core.tracking import log_results, stage_run
from music_rm.evaluation.mt_bench import headline, load, records, results, score_conversations, table, truncated_shares
from music_rm.evaluation.records import write_records
from music_rm.reward.model import load_reward_model
from music_rm.reward.stale import remove_stale

# The params this stage reads, all it can read (Params.for_stage) and its params in dvc.yaml (`make deps`)
PARAMS = ("mt_bench.batch_size", "mt_bench.max_length", "mt_bench.bootstrap_resamples", "mt_bench.seed",
          "mt_bench.limit", "mt_bench.sources.{source}",
          "eval.cpu_dtype", "eval.cache", "eval.compare", "train.variants", "train.seeds")


@click.command(context_settings=HELP)
@click.option("--source", required=True, help="A key of mt_bench.sources in params.yaml.")
@params_option
@models_option
@click.option("--out", default=f"{paths.EVAL}/mt_bench", show_default=True, type=click.Path(path_type=Path),
              help="Parent folder of each source's metrics.json, report.md and records.csv.")
@clean_errors
@logged
@on_gpu_slot
def main(source, params_path, models, out):
    """Agreement of every variant with the MT-Bench human votes, per turn, beside GPT-4 and answer length."""
    params = load_params(params_path).for_stage(PARAMS, source=source)
    seed = params.train.seeds[0]  # the one training seed scored here
    p = params.mt_bench
    s = p.sources[source]
    with committed_outputs(out) as out, \
         stage_run(f"mt_bench@{source}", params, inputs=[models, s.questions, s.answers, s.human, s.gpt4],
                   environment_file=out / source / "environment.json"):
        remove_stale(params.train, models)  # what a removed variant or seed left: DVC hashes models/rm
        votes, gpt4, conversations = load(s.questions, s.answers, s.human, s.gpt4, p.limit, p.seed)
        rewards, truncated = {}, None
        for variant in params.train.variants:
            model_dir = paths.reward_model(models, variant, seed)
            with load_reward_model(str(model_dir), cpu_dtype=params.eval.cpu_dtype, cache=params.eval.cache) as rm:
                rewards[variant] = score_conversations(rm, conversations, p.batch_size, p.max_length, variant)
                truncated = truncated or truncated_shares(rm.tokenizer, conversations, p.max_length)  # one base model
        rows = records(rewards, votes, gpt4, conversations, source, seed)
        metrics = {**results(rows, rewards, conversations, params.eval.compare, p.bootstrap_resamples, p.seed),
                   "truncated": truncated}
        report = table(metrics, params.train.variants)
        write_json(out / source / "metrics.json", metrics)
        write_records(out / source / "records.csv", rows)
        write_text(out / source / "report.md", "# Agreement with MT-Bench human experts (non-tie votes)\n\n"
                   "accuracy [95% bootstrap CI over questions: each resample draws the questions with replacement and "
                   "keeps all their votes] (n votes, reward ties, which count ½)\n\n" + report + "\n")
        log_results(metrics, headline(metrics))
    click.echo(f"mt_bench@{source}: agreement with human experts on {len(votes)} non-tie votes\n{report}")


if __name__ == "__main__":
    main()
