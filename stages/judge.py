"""Stage judge@<set>: an LLM judge on a set of pairs (both orders), and every reward model against it."""
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, models_option, params_option
from music_rm.core.gpu_slots import on_gpu_slot
from music_rm.core.io import write_json, write_jsonl
from music_rm.core.outputs import committed_outputs
from music_rm.core.params import load_params
from music_rm.core.tracking import log_results, stage_run
from music_rm.data.conversation import read_pairs
from music_rm.evaluation.judge import agreement, headline, judge_pairs, load_template, records
from music_rm.evaluation.records import write_records
from music_rm.generation.backends import make_backend
from music_rm.generation.cache import GenerationCache, default_path
from music_rm.generation.generator import Generator
from music_rm.reward.model import load_reward_model
from music_rm.reward.stale import remove_stale

# The params this stage reads, all it can read (Params.for_stage) and its params in dvc.yaml (`make deps`)
PARAMS = ("judge.pair_sets.{set}", "judge.backend", "judge.dtype", "judge.batch_size", "judge.vllm", "judge.openai",
          "judge.cache", "judge.sampling", "judge.limit", "judge.seed", "judge.bootstrap_resamples",
          "eval.batch_size", "eval.max_length", "eval.cpu_dtype", "eval.cache", "eval.compare",
          "train.variants", "train.seeds", "base.trust_remote_code")


@click.command(context_settings=HELP)
@click.option("--set", "set_name", required=True, help="A key of judge.pair_sets in params.yaml.")
@params_option
@click.option("--judge-model", default=paths.BASE_MODEL, show_default=True, type=click.Path(path_type=Path),
              help="The local judge's model folder (backend transformers, or vllm with vllm.model null).")
@models_option
@click.option("--out", default=f"{paths.EVAL}/judge", show_default=True, type=click.Path(path_type=Path),
              help="Parent folder of each set's verdicts.jsonl, metrics.json and records.csv.")
@clean_errors
@logged
@on_gpu_slot
def main(set_name, params_path, judge_model, models, out):
    """Judge each pair of the set in both orders; agreement of the judge with the labels and of each RM with it."""
    params = load_params(params_path).for_stage(PARAMS, set=set_name)
    seed = params.train.seeds[0]  # the one training seed scored here
    p = params.judge
    pairs_path = Path(p.pair_sets[set_name])
    with committed_outputs(out) as out, \
         stage_run(f"judge@{set_name}", params, inputs=[pairs_path, judge_model, models],
                   environment_file=out / set_name / "environment.json"):
        remove_stale(params.train, models)  # what a removed variant or seed left: DVC hashes models/rm
        pairs = read_pairs(pairs_path)[: p.limit]
        # A vLLM judge (or the vLLM server the stage started) gives its GPUs back before the reward models load.
        with Generator(make_backend(p, str(judge_model), params.base.trust_remote_code),
                       GenerationCache(default_path()) if p.cache else None) as generator:
            verdicts = judge_pairs(generator, pairs, p.sampling, p.seed)
        margins = {}
        for variant in params.train.variants:
            model_dir = paths.reward_model(models, variant, seed)
            with load_reward_model(str(model_dir), cpu_dtype=params.eval.cpu_dtype, cache=params.eval.cache) as rm:
                margins[variant] = rm.margins(pairs, params.eval.batch_size, params.eval.max_length,
                                              f"{variant}: judged pairs")
        rows = records(pairs, verdicts, margins, set_name, seed)
        result = {**agreement(verdicts, rows, list(params.train.variants), params.eval.compare, p.bootstrap_resamples,
                              p.seed), "template": load_template()[1]}
        write_jsonl(out / set_name / "verdicts.jsonl", verdicts)
        write_json(out / set_name / "metrics.json", result)
        write_records(out / set_name / "records.csv", rows)
        log_results({k: v for k, v in result.items() if k != "template"}, headline(result))
    jvl, vs_judge = result["judge_vs_label"], result["suites"]["judge"]["models"]
    click.echo(f"judge@{set_name}: {len(pairs)} pairs, inconsistent {result['verdicts_inconsistent']}, unparsed "
               f"{result['verdicts_unparsed']}, judge agrees with the label on "
               f"{jvl['estimate'] if jvl['n'] else 'n/a'} of {jvl['n']} consistent verdicts; "
               + ", ".join(f"{v}: {vs_judge[v]['estimate']} ({vs_judge[v]['ties']} ties)" if v in vs_judge else f"{v}: n/a"
                           for v in params.train.variants) + " (RM vs judge, ties ½)")


if __name__ == "__main__":
    main()
