"""Stage reward_bench@<source>: every reward-model variant on a benchmark source (RewardBench, LLMBar, RewardBench 2,
RM-Bench, RMB)."""
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, models_option, params_option
from music_rm.core.gpu_slots import on_gpu_slot
from music_rm.core.io import write_json, write_text
from music_rm.core.outputs import committed_outputs
from music_rm.core.params import load_params
from music_rm.core.tracking import log_results, stage_run
from music_rm.data.lengths import conversations_truncated
from music_rm.data.prompts import draw
from music_rm.evaluation.benchmarks import BENCHMARKS, subset_counts
from music_rm.evaluation.candidates import score_items
from music_rm.evaluation.records import write_records
from music_rm.evaluation.report import truncated_line
from music_rm.reward.model import load_reward_model
from music_rm.reward.stale import remove_stale

# The params this stage reads, all it can read (Params.for_stage) and its params in dvc.yaml (`make deps`)
PARAMS = ("reward_bench.batch_size", "reward_bench.max_length", "reward_bench.bootstrap_resamples", "reward_bench.seed",
          "reward_bench.limit", "reward_bench.on_invalid", "reward_bench.sources.{source}",
          "eval.cpu_dtype", "eval.cache", "eval.compare", "train.variants", "train.seeds")


@click.command(context_settings=HELP)
@click.option("--source", required=True, help="A key of reward_bench.sources in params.yaml.")
@params_option
@models_option
@click.option("--out", default=f"{paths.EVAL}/reward_bench", show_default=True, type=click.Path(path_type=Path),
              help="Parent folder of each source's metrics.json, report.md and records.csv.")
@clean_errors
@logged
@on_gpu_slot
def main(source, params_path, models, out):
    """Scores of every variant on a benchmark source (a local copy or a Hugging Face dataset), as its upstream
    computes them, with the per-item records."""
    params = load_params(params_path).for_stage(PARAMS, source=source)
    seed = params.train.seeds[0]  # the one training seed scored here
    p = params.reward_bench
    s, name, stage = p.sources[source], source, f"reward_bench@{source}"
    bench = BENCHMARKS[s.format]
    with committed_outputs(out) as out, \
         stage_run(stage, params, inputs=[models] + ([s.path] if s.kind == "file" else []),
                   environment_file=out / name / "environment.json"):
        remove_stale(params.train, models)  # what a removed variant or seed left: DVC hashes models/rm
        items, skipped, resolved = bench.load(name, s, p.on_invalid)
        items = draw(items, p.limit, p.seed)
        items.sort(key=lambda item: (item.subset, item.source_id))  # the records' order: intervals recompute
        rewards, truncated = {}, None
        for variant in params.train.variants:
            model_dir = paths.reward_model(models, variant, seed)  # other suites: the first seed
            with load_reward_model(str(model_dir), cpu_dtype=params.eval.cpu_dtype, cache=params.eval.cache) as rm:
                rewards[variant] = score_items(rm, items, p.batch_size, p.max_length, f"{variant}: {bench.title}")
                truncated = truncated or conversations_truncated(  # one base model: every variant's tokenizer
                    rm.tokenizer, [c for item in items for c in item.conversations()], p.max_length)
        rows, results = bench.evaluate(items, rewards, name, seed, list(params.train.variants), params.eval.compare,
                                       p.bootstrap_resamples, p.seed)
        metrics = {"items": len(items), "subsets": subset_counts(items), "resolved_revision": resolved,
                   "skipped": sum(skipped.values()), "skipped_by_reason": dict(sorted(skipped.items())),
                   "truncated": truncated, **results}
        report = f"{bench.report(name, metrics).rstrip()}\n\nItems: {truncated_line(truncated)}\n"
        write_json(out / name / "metrics.json", metrics)
        write_records(out / name / "records.csv", rows)
        write_text(out / name / "report.md", report)
        log_results(metrics, bench.headline(metrics))
    click.echo(f"{stage}: {len(items)} items, {truncated_line(truncated)}\n{report}")


if __name__ == "__main__":
    main()
