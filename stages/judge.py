"""Stage judge: an LLM judge on held-out MUSIC pairs (both orders), and every reward model against it."""
from dataclasses import asdict
from pathlib import Path

import click

from music_rm.cache import GenerationCache, default_path
from music_rm.cli import clean_errors
from music_rm.conversation import read_pairs
from music_rm.evaluate import pair_margins
from music_rm.generation import Generator, make_backend
from music_rm.io import write_json, write_jsonl
from music_rm.judge import agreement, judge_pairs, load_template
from music_rm.params import section
from music_rm.reward import load_reward_model
from music_rm.tracking import numeric, stage_run


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--pairs", "pairs_path", default="data/contrast/test.jsonl", show_default=True,
              type=click.Path(path_type=Path))
@click.option("--judge-model", default="models/base", show_default=True, type=click.Path(path_type=Path))
@click.option("--models", default="models/rm", show_default=True, type=click.Path(path_type=Path))
@click.option("--out", default="data/eval/judge", show_default=True, type=click.Path(path_type=Path))
@clean_errors
def main(params_path, pairs_path, judge_model, models, out):
    p = section("judge", params_path)
    variants = section("train", params_path).variants
    trust_remote_code = section("base", params_path).trust_remote_code
    with stage_run("judge", {"judge": asdict(p)}, params_path=params_path,
                   inputs=[pairs_path, judge_model, models]) as mlflow:
        pairs = read_pairs(pairs_path)[: p.limit]
        generator = Generator(make_backend(p, str(judge_model), trust_remote_code),
                              GenerationCache(default_path()) if p.cache else None)
        verdicts = judge_pairs(generator, pairs, p.sampling, p.seed)
        margins = {}
        for variant in variants:
            model, tokenizer = load_reward_model(str(models / variant))
            margins[variant] = pair_margins(model, tokenizer, pairs, 8, f"{variant}: judged pairs")
        result = {**agreement(verdicts, margins, p.bootstrap_resamples, p.seed), "template": load_template()[1]}
        write_jsonl(out / "verdicts.jsonl", verdicts)
        write_json(out / "metrics.json", result)
        mlflow.log_metrics(numeric(result))
    jvl = result["judge_vs_label"]
    click.echo(f"judge: {len(pairs)} pairs, inconsistent {result['verdicts_inconsistent']}, unparsed "
               f"{result['verdicts_unparsed']}, judge agrees with the MUSIC label on "
               f"{jvl['accuracy'] if jvl['n'] else 'n/a'} of {jvl['n']} consistent verdicts; "
               + ", ".join(f"{v}: {result[f'rm_vs_judge.{v}']['accuracy']}" for v in variants) + " (RM vs judge)")


if __name__ == "__main__":
    main()
