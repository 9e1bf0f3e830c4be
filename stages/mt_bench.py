"""Stage mt_bench@<source>: every reward-model variant against the MT-Bench human expert votes."""
from dataclasses import asdict
from pathlib import Path

import click

from music_rm.cli import clean_errors
from music_rm.io import write_json, write_text
from music_rm.mt_bench import agreement, baselines, load, score_conversations, table
from music_rm.params import section
from music_rm.reward import load_reward_model
from music_rm.tracking import numeric, stage_run


@click.command()
@click.option("--source", required=True, help="A key of mt_bench.sources in params.yaml.")
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--models", default="models/rm", show_default=True, type=click.Path(path_type=Path))
@click.option("--out", default="data/eval/mt_bench", show_default=True, type=click.Path(path_type=Path))
@clean_errors
def main(source, params_path, models, out):
    p = section("mt_bench", params_path)
    s = p.source(source)
    variants = section("train", params_path).variants
    with stage_run(f"mt_bench@{source}", {"mt_bench": {**asdict(p), "sources": {source: asdict(s)}}},
                   params_path=params_path, inputs=[models, s.questions, s.answers, s.human, s.gpt4]) as mlflow:
        votes, gpt4, conversations = load(s.questions, s.answers, s.human, s.gpt4)
        results = {}
        for variant in variants:
            model, tokenizer = load_reward_model(str(models / variant))
            rewards = score_conversations(model, tokenizer, conversations, p.batch_size, p.max_length, variant)
            results[variant] = agreement(rewards, votes, conversations, p.bootstrap_resamples, p.seed)
        base = baselines(votes, gpt4, conversations, p.bootstrap_resamples, p.seed)
        report = table(results, base)
        write_json(out / source / "metrics.json", {"reward_models": results, "baselines": base})
        write_text(out / source / "report.md", "# Agreement with MT-Bench human experts (non-tie votes)\n\n"
                   "accuracy [95% bootstrap CI] (n votes)\n\n" + report + "\n")
        mlflow.log_metrics(numeric({"reward_models": results, "baselines": base}))
    click.echo(f"mt_bench@{source}: agreement with human experts on {len(votes)} non-tie votes\n{report}")


if __name__ == "__main__":
    main()
