"""Stages reward_bench_file@<name> and reward_bench_hub@<name>: every reward-model variant on RewardBench."""
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, models_option, params_option
from music_rm.core.io import write_json, write_text
from music_rm.core.outputs import committed_outputs
from music_rm.core.params import load_params
from music_rm.core.tracking import numeric, stage_run
from music_rm.evaluation.records import write_records
from music_rm.data.prompts import draw
from music_rm.evaluation.reward_bench import (by_subset, differences, length_margins, load_hub, load_local, records,
                                              scores, subset_counts, table)
from music_rm.reward.model import load_reward_model
from music_rm.reward.stale import remove_stale


@click.command(context_settings=HELP)
@click.option("--file", "file_name", help="A key of reward_bench.files in params.yaml.")
@click.option("--hub", "hub_name", help="A key of reward_bench.hub in params.yaml.")
@params_option
@models_option
@click.option("--out", default=f"{paths.EVAL}/reward_bench", show_default=True, type=click.Path(path_type=Path),
              help="Parent folder of each source's metrics.json, report.md and records.csv.")
@clean_errors
@logged
def main(file_name, hub_name, params_path, models, out):
    """Section scores of every variant on a RewardBench source (a local copy or the Hub dataset)."""
    if (file_name is None) == (hub_name is None):
        raise click.UsageError("give one of --file NAME or --hub NAME")
    params = load_params(params_path)
    seed = params.train.seeds[0]  # the one training seed scored here
    p = params.reward_bench
    kind, name = ("file", file_name) if file_name else ("hub", hub_name)
    s = p.source(kind, name)
    stage = f"reward_bench_{kind}@{name}"
    sections = {"reward_bench": {**p.model_dump(mode="json"), "files": {}, "hub": {},
                                 {"file": "files", "hub": "hub"}[kind]: {name: s.model_dump(mode="json")}}}
    with committed_outputs(out) as out, \
         stage_run(stage, params, sections, inputs=[models] + ([s.path] if kind == "file" else []),
                   environment_file=out / name / "environment.json") as mlflow:
        remove_stale(params.train, models)  # what a removed variant or seed left: DVC hashes models/rm
        if kind == "file":
            pairs, resolved = load_local(s.path, s.format), None
        else:
            pairs, resolved = load_hub(s.hf_dataset, s.hf_revision, s.hf_split)
        pairs = draw(pairs, p.limit, p.seed)
        pairs.sort(key=lambda pair: (pair["subset"], pair["source_id"]))  # the records' order: intervals recompute
        results, margins = {}, {}
        for variant in params.train.variants:
            model_dir = paths.reward_model(models, variant, seed)  # other suites: the first seed
            with load_reward_model(str(model_dir), cpu_dtype=params.eval.cpu_dtype, cache=params.eval.cache) as rm:
                margins[variant] = rm.margins(pairs, p.batch_size, p.max_length, f"{variant}: RewardBench")
            results[variant] = scores(by_subset(pairs, margins[variant]), p.bootstrap_resamples, p.seed)
        longer = scores(by_subset(pairs, length_margins(pairs)), p.bootstrap_resamples, p.seed)
        report = table({**results, "longer answer wins": longer})
        metrics = {"pairs": len(pairs), "subsets": subset_counts(pairs), "resolved_revision": resolved,
                   "reward_models": results, "longer_answer": longer,
                   "differences": differences(margins, params.eval.compare, p.bootstrap_resamples, p.seed)}
        write_json(out / name / "metrics.json", metrics)
        write_records(out / name / "records.csv", records(pairs, margins, name, seed))
        write_text(out / name / "report.md", f"# RewardBench: {name}\n\nSection scores: accuracy per subset, "
                   "weighted by upstream's example counts; [95% bootstrap CI]; a reward tie (equal to 6 decimals) "
                   "counts ½ (upstream: 0). Subsets: "
                   f"{metrics['subsets']}\n\n{report}\n")
        mlflow.log_metrics(numeric({k: metrics[k] for k in ("reward_models", "longer_answer", "differences")}))
    click.echo(f"{stage}: {len(pairs)} pairs\n{report}")


if __name__ == "__main__":
    main()
