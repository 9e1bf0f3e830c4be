"""Stage best_of_n@<set>: multi-turn Best-of-N with each reward model, judged against greedy and each other."""
from collections import Counter
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, models_option, params_option
from music_rm.core.gpu_slots import on_gpu_slot
from music_rm.core.io import atomic_path, read_json, write_json, write_jsonl, write_text
from music_rm.core.outputs import committed_outputs
from music_rm.core.params import load_params
from music_rm.core.tracking import log_results, stage_run
from music_rm.data.prompts import read_prompts
from music_rm.evaluation.best_of_n import (headline, heatmap_plot, judge_rollouts, records, roll_out, table,
                                           win_rates)
from music_rm.evaluation.judge import load_template
from music_rm.evaluation.records import write_records
from music_rm.generation.backends import make_backend
from music_rm.generation.cache import GenerationCache, default_path
from music_rm.generation.generator import Generator
from music_rm.method.simulate import TreeBuilder
from music_rm.reward.model import load_reward_model
from music_rm.reward.stale import remove_stale

# The params this stage reads, all it can read (Params.for_stage) and its params in dvc.yaml (`make deps`)
PARAMS = ("best_of_n.prompt_sets.{set}", "best_of_n.turns", "best_of_n.n", "best_of_n.variants", "best_of_n.reference",
          "best_of_n.policy", "best_of_n.batch_size", "best_of_n.max_length", "best_of_n.seed",
          "best_of_n.bootstrap_resamples", "simulate",
          "judge.backend", "judge.dtype", "judge.batch_size", "judge.vllm", "judge.openai", "judge.cache",
          "judge.sampling", "judge.seed", "eval.cpu_dtype", "eval.cache",
          "train.variants", "train.seeds", "base.trust_remote_code")


@click.command(context_settings=HELP)
@click.option("--set", "set_name", required=True, help="A key of best_of_n.prompt_sets in params.yaml.")
@params_option
@click.option("--model", default=paths.BASE_MODEL, show_default=True, type=click.Path(path_type=Path),
              help="The base model: policy, user simulator and local judge, unless their backends name others.")
@models_option
@click.option("--out", default=f"{paths.EVAL}/best_of_n", show_default=True, type=click.Path(path_type=Path),
              help="Parent folder of each set's rollouts, verdicts, records, metrics, report and heatmap.")
@clean_errors
@logged
@on_gpu_slot
def main(set_name, params_path, model, models, out):
    """Roll out Best-of-N conversations from the set's prompts with each RM, then judge them in both orders."""
    params = load_params(params_path).for_stage(PARAMS, set=set_name)
    seed = params.train.seeds[0]  # the one training seed scored here
    p, sim, judge = params.best_of_n, params.simulate, params.judge
    prompt_set = p.prompt_sets[set_name]
    out = out / set_name
    with committed_outputs(out) as out, \
         stage_run(f"best_of_n@{set_name}", params, inputs=[prompt_set.path, model, models],
                   environment_file=out / "environment.json") as mlflow:
        remove_stale(params.train, models)  # what a removed variant or seed left: DVC hashes models/rm
        prompts, skipped = read_prompts(prompt_set.path, prompt_set.format, prompt_set.limit, p.seed)
        trust_remote_code = params.base.trust_remote_code
        def reward_fn(variant):
            """Loads the variant's RM (its first training seed's) for each turn's scoring and frees it after: one RM
            in memory at a time, on the GPUs the policy's engine leaves room on."""
            model_dir = paths.reward_model(models, variant, seed)

            def score_candidates(conversations):
                with load_reward_model(str(model_dir), cpu_dtype=params.eval.cpu_dtype, cache=params.eval.cache) as rm:
                    return rm.score(conversations, p.batch_size, p.max_length, f"{variant}: candidates")
            return score_candidates

        reward_fns = {variant: reward_fn(variant) for variant in p.variants}
        # The policy's engine or server stops before the judge's starts: each may want every GPU.
        with Generator(make_backend(sim, str(model), trust_remote_code),
                       GenerationCache(default_path()) if sim.cache else None) as policy:
            builder = TreeBuilder(policy, sim, model=read_json(model / "provenance.json"))
            rollouts = roll_out(policy, builder, reward_fns, prompts, p, sim.max_retries)
        with Generator(make_backend(judge, str(model), trust_remote_code),
                       GenerationCache(default_path()) if judge.cache else None) as judge_generator:
            verdicts = judge_rollouts(judge_generator, rollouts, p, judge.sampling, judge.seed)
        rows = records(verdicts, p, set_name, seed)
        rates = win_rates(rows, p)
        failed = Counter(r.failed for r in rollouts if r.failed)
        metrics = {"prompts": len(prompts), "prompt_rows_skipped_by_reason": dict(sorted(skipped.items())),
                   "prompts_judged": len({v["prompt_id"] for v in verdicts}),
                   "judge_prompts_too_long": sum(v["verdict"] == "prompt_too_long" for v in verdicts),
                   "rollouts_failed": sum(failed.values()), "rollouts_failed_by_reason": dict(sorted(failed.items())),
                   "judge_template": load_template()[1], "win_rates": rates}
        report = table(rates, p)
        write_jsonl(out / "rollouts.jsonl", [{"prompt_id": r.prompt_id, "policy": r.name, "messages": r.messages,
                                              "picked": r.picked, "failed": r.failed} for r in rollouts])
        write_jsonl(out / "verdicts.jsonl", verdicts)
        write_records(out / "records.csv", rows)
        write_json(out / "metrics.json", metrics)
        with atomic_path(out / "heatmap.png") as tmp:
            heatmap_plot(rates, p, tmp)
        write_text(out / "report.md", f"# Multi-turn Best-of-N: {set_name} ({p.turns} turns, {metrics['prompts_judged']} "
                   f"of {len(prompts)} seed prompts judged)\n\nWin rate of the first policy named, judged on whole "
                   "conversations in both orders (ties = ½); [95% bootstrap CI] (wins/ties/losses).\n\n"
                   f"{report}\n\n![heatmap](heatmap.png)\n")
        log_results({k: v for k, v in metrics.items() if k != "judge_template"}, headline(metrics))
        mlflow.log_artifact(str(out / "heatmap.png"))
    click.echo(f"best_of_n@{set_name}: {len(prompts)} prompts × {p.turns} turns, {metrics['rollouts_failed']} rollouts "
               f"failed {metrics['rollouts_failed_by_reason']}; policy {policy.model_calls} model calls "
               f"({policy.cache_hits} from the cache), judge {judge_generator.model_calls} "
               f"({judge_generator.cache_hits} from the cache)\n{report}")


if __name__ == "__main__":
    main()
