"""Stage reward_bench@<source>: every reward-model variant on a RewardBench source."""
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, models_option, params_option
from music_rm.core.io import write_json, write_text
from music_rm.core.outputs import committed_outputs
from music_rm.core.params import load_params
from music_rm.core.tracking import log_results, stage_run
from music_rm.evaluation.records import write_records
from music_rm.data.prompts import draw
from music_rm.evaluation.reward_bench import (LONGER_ANSWER, headline, load_hub, load_local, records, results,
                                              subset_counts, table)
from music_rm.reward.model import load_reward_model

# The params this stage reads, all it can read (Params.for_stage) and its params in dvc.yaml (`make deps`)
PARAMS = ("reward_bench.batch_size", "reward_bench.max_length", "reward_bench.bootstrap_resamples", "reward_bench.seed",
          "reward_bench.limit", "reward_bench.sources.{source}",
          "eval.cpu_dtype", "eval.cache", "eval.compare", "train.variants", "train.seeds")


@click.command(context_settings=HELP)
@click.option("--source", required=True, help="A key of reward_bench.sources in params.yaml.")
@params_option
@models_option
@click.option("--out", default=f"{paths.EVAL}/reward_bench", show_default=True, type=click.Path(path_type=Path),
              help="Parent folder of each source's metrics.json, report.md and records.csv.")
@clean_errors
@logged
def main(source, params_path, models, out):
    """Section scores of every variant on a RewardBench source (a local copy or a Hugging Face dataset)."""
    params = load_params(params_path).for_stage(PARAMS, source=source)
    seed = params.train.seeds[0]  # the one training seed scored here
    p = params.reward_bench
    s, name, stage = p.sources[source], source, f"reward_bench@{source}"
    with committed_outputs(out) as out, \
         stage_run(stage, params, inputs=[models] + ([s.path] if s.kind == "file" else []),
                   environment_file=out / name / "environment.json"):
        if s.kind == "file":
            pairs, resolved = load_local(s.path, s.format), None
        else:
            pairs, resolved = load_hub(s.hf_dataset, s.hf_revision, s.hf_split)
        pairs = draw(pairs, p.limit, p.seed)
        pairs.sort(key=lambda pair: (pair["subset"], pair["source_id"]))  # the records' order: intervals recompute
        margins = {}
        for variant in params.train.variants:
            model_dir = paths.reward_model(models, variant, seed)  # other suites: the first seed
            with load_reward_model(str(model_dir), cpu_dtype=params.eval.cpu_dtype, cache=params.eval.cache) as rm:
                margins[variant] = rm.margins(pairs, p.batch_size, p.max_length, f"{variant}: RewardBench")
        rows = records(pairs, margins, name, seed)
        metrics = {"pairs": len(pairs), "subsets": subset_counts(pairs), "resolved_revision": resolved,
                   **results(rows, params.train.variants, params.eval.compare, p.bootstrap_resamples, p.seed)}
        report = table({**metrics["reward_models"], "longer answer wins": metrics[LONGER_ANSWER]})
        write_json(out / name / "metrics.json", metrics)
        write_records(out / name / "records.csv", rows)
        write_text(out / name / "report.md", f"# RewardBench: {name}\n\nSection scores: accuracy per subset, "
                   "weighted by upstream's example counts; [95% bootstrap CI]; a reward tie (equal to 6 decimals) "
                   "counts ½ (upstream: 0). Subsets: "
                   f"{metrics['subsets']}\n\n{report}\n")
        log_results(metrics, headline(metrics))
    click.echo(f"{stage}: {len(pairs)} pairs\n{report}")


if __name__ == "__main__":
    main()
