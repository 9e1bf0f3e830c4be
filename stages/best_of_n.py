"""Stage best_of_n: multi-turn Best-of-N with each reward model, judged against greedy and against each other."""
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import click

from music_rm.best_of_n import heatmap_plot, judge_rollouts, roll_out, seed_prompts, table, win_rates
from music_rm.cache import GenerationCache, default_path
from music_rm.cli import clean_errors
from music_rm.conversation import read_pairs
from music_rm.generation import Generator, make_backend
from music_rm.io import read_json, write_json, write_jsonl, write_text
from music_rm.judge import load_template
from music_rm.params import ParamsError, section
from music_rm.reward import load_reward_model, score
from music_rm.simulate import TreeBuilder
from music_rm.tracking import numeric, stage_run


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--model", default="models/base", show_default=True, type=click.Path(path_type=Path),
              help="The base model: policy, user simulator and local judge, unless their backends name others.")
@click.option("--models", default="models/rm", show_default=True, type=click.Path(path_type=Path))
@click.option("--out", default="data/eval/best_of_n", show_default=True, type=click.Path(path_type=Path))
@clean_errors
def main(params_path, model, models, out):
    p = section("best_of_n", params_path)
    sim, judge = section("simulate", params_path), section("judge", params_path)
    trained = section("train", params_path).variants
    missing = [v for v in p.variants if v not in trained]
    if missing:
        raise ParamsError(f"{params_path}: best_of_n.variants {missing} are not in train.variants {sorted(trained)}")
    trust_remote_code = section("base", params_path).trust_remote_code
    with stage_run("best_of_n", {"best_of_n": asdict(p)}, params_path=params_path,
                   inputs=[p.prompts, model, models]) as mlflow:
        prompts = seed_prompts(read_pairs(p.prompts), p.limit)
        policy = Generator(make_backend(sim, str(model), trust_remote_code),
                           GenerationCache(default_path()) if sim.cache else None)
        builder = TreeBuilder(policy, sim, model=read_json(model / "provenance.json"))
        reward_fns = {}
        for variant in p.variants:
            rm, tokenizer = load_reward_model(str(models / variant))
            reward_fns[variant] = (lambda conversations, rm=rm, tokenizer=tokenizer, variant=variant: score(
                rm, tokenizer, conversations, p.batch_size, f"{variant}: candidates", p.max_length))
        rollouts = roll_out(policy, builder, reward_fns, prompts, p, sim.max_retries)
        judge_generator = Generator(make_backend(judge, str(model), trust_remote_code),
                                    GenerationCache(default_path()) if judge.cache else None)
        verdicts = judge_rollouts(judge_generator, rollouts, p, judge.sampling, judge.seed)
        rates = win_rates(verdicts, p)
        failed = Counter(r.failed for r in rollouts if r.failed)
        metrics = {"prompts": len(prompts), "prompts_judged": len({v["prompt_id"] for v in verdicts}),
                   "rollouts_failed": sum(failed.values()), "rollouts_failed_by_reason": dict(sorted(failed.items())),
                   "judge_template": load_template()[1], "win_rates": rates}
        report = table(rates, p)
        write_jsonl(out / "rollouts.jsonl", [{"prompt_id": r.prompt_id, "policy": r.name, "messages": r.messages,
                                              "picked": r.picked, "failed": r.failed} for r in rollouts])
        write_jsonl(out / "verdicts.jsonl", verdicts)
        write_json(out / "metrics.json", metrics)
        heatmap_plot(rates, p, out / "heatmap.png")
        write_text(out / "report.md", f"# Multi-turn Best-of-N ({p.turns} turns, {metrics['prompts_judged']} of "
                   f"{len(prompts)} seed prompts judged)\n\nWin rate of the first policy named, judged on whole "
                   "conversations in both orders (ties = ½); [95% bootstrap CI] (wins/ties/losses).\n\n"
                   f"{report}\n\n![heatmap](heatmap.png)\n")
        mlflow.log_metrics(numeric({k: v for k, v in metrics.items() if k != "judge_template"}))
        mlflow.log_artifact(str(out / "heatmap.png"))
    click.echo(f"best_of_n: {len(prompts)} prompts × {p.turns} turns, {metrics['rollouts_failed']} rollouts failed "
               f"{metrics['rollouts_failed_by_reason']}; policy {policy.model_calls} model calls "
               f"({policy.cache_hits} from the cache), judge {judge_generator.model_calls} "
               f"({judge_generator.cache_hits} from the cache)\n{report}")


if __name__ == "__main__":
    main()
