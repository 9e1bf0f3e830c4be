"""Stages reward_bench_file@<name> and reward_bench_hub@<name>: every reward-model variant on RewardBench."""
from dataclasses import asdict
from pathlib import Path

import click

from music_rm.cli import clean_errors
from music_rm.io import write_json, write_text
from music_rm.params import section
from music_rm.reward import load_reward_model, score
from music_rm.reward_bench import load_hub, load_local, scores, subset_counts, table
from music_rm.tracking import numeric, stage_run


@click.command()
@click.option("--file", "file_name", help="A key of reward_bench.files in params.yaml.")
@click.option("--hub", "hub_name", help="A key of reward_bench.hub in params.yaml.")
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--models", default="models/rm", show_default=True, type=click.Path(path_type=Path))
@click.option("--out", default="data/eval/reward_bench", show_default=True, type=click.Path(path_type=Path))
@clean_errors
def main(file_name, hub_name, params_path, models, out):
    if (file_name is None) == (hub_name is None):
        raise click.UsageError("give one of --file NAME or --hub NAME")
    p = section("reward_bench", params_path)
    kind, name = ("file", file_name) if file_name else ("hub", hub_name)
    s = p.source(kind, name)
    variants = section("train", params_path).variants
    stage = f"reward_bench_{kind}@{name}"
    inputs = [models] + ([s.path] if kind == "file" else [])
    with stage_run(stage, {"reward_bench": {**asdict(p), "files": {}, "hub": {}, kind: {name: asdict(s)}}},
                   params_path=params_path, inputs=inputs) as mlflow:
        if kind == "file":
            pairs, resolved = load_local(s.path, s.format), None
        else:
            pairs, resolved = load_hub(s.hf_dataset, s.hf_revision, s.hf_split)
        results = {}
        for variant in variants:
            model, tokenizer = load_reward_model(str(models / variant))
            rewards = score(model, tokenizer, [pair["chosen"] for pair in pairs] + [pair["rejected"] for pair in pairs],
                            p.batch_size, f"{variant}: RewardBench", p.max_length)
            correct = {}
            for pair, chosen, rejected in zip(pairs, rewards[: len(pairs)], rewards[len(pairs):]):
                correct.setdefault(pair["subset"], []).append(float(chosen > rejected))
            results[variant] = scores(correct, p.bootstrap_resamples, p.seed)
        report = table(results)
        metrics = {"pairs": len(pairs), "subsets": subset_counts(pairs), "resolved_revision": resolved,
                   "reward_models": results}
        write_json(out / name / "metrics.json", metrics)
        write_text(out / name / "report.md", f"# RewardBench: {name}\n\nSection scores: accuracy per subset, "
                   "weighted by upstream's example counts; [95% bootstrap CI]. Subsets: "
                   f"{metrics['subsets']}\n\n{report}\n")
        mlflow.log_metrics(numeric({"reward_models": results}))
    click.echo(f"{stage}: {len(pairs)} pairs\n{report}")


if __name__ == "__main__":
    main()
