"""Stage simulate: MUSIC trees (a chosen and a rejected branch) from a seeded sample of the train and test prompts."""
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, params_option
from music_rm.core.disk import DiskFull
from music_rm.core.errors import StageFailure
from music_rm.core.gpu_slots import on_gpu_slot
from music_rm.core.io import read_json, read_jsonl, write_json, write_jsonl, write_text
from music_rm.core.outputs import committed_outputs
from music_rm.core.params import load_params
from music_rm.core.tracking import log_results, stage_run
from music_rm.generation.backends import generator_provenance, make_backend
from music_rm.generation.cache import GenerationCache, default_path
from music_rm.generation.generator import Generator
from music_rm.method.simulate import (HEADLINE, TreeBuilder, check_trees, message_stats, relatedness_stats,
                                      sample_markdown, sample_prompts, split_seed)

# The params this stage reads, all it can read (Params.for_stage) and its params in dvc.yaml (`make deps`)
PARAMS = ("simulate", "base.trust_remote_code")


def token_counter(model_dir: Path):
    """Token counts by the base model's tokenizer (whichever backend generated the text)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)


@click.command(context_settings=HELP)
@params_option
@click.option("--data", default=paths.FETCH, show_default=True, type=click.Path(path_type=Path),
              help="Folder with fetch's train.jsonl and test.jsonl.")
@click.option("--model", default=paths.BASE_MODEL, show_default=True, type=click.Path(path_type=Path),
              help="The base model folder.")
@click.option("--out", default=paths.SIMULATE, show_default=True, type=click.Path(path_type=Path),
              help="Folder for trees.jsonl, summary.json and sample.md.")
@clean_errors
@logged
@on_gpu_slot
def main(params_path, data, model, out):
    """Simulate a MUSIC tree from each sampled distinct prompt of the train and test splits (each split with its own
    simulation seed; with simulate.resample, a third branch on the train trees)."""
    params = load_params(params_path).for_stage(PARAMS)
    p = params.simulate
    with committed_outputs(out) as out, \
         stage_run("simulate", params, inputs=[data / "train.jsonl", data / "test.jsonl", model],
                   environment_file=out / "environment.json") as mlflow:
        seeds = [(row, split) for split, size in (("train", p.train_prompts), ("test", p.test_prompts))
                 for row in sample_prompts(read_jsonl(data / f"{split}.jsonl"), size, split_seed(p, split))]
        cache = GenerationCache(default_path()) if p.cache else None
        with Generator(make_backend(p, str(model), params.base.trust_remote_code), cache) as generator:
            builder = TreeBuilder(generator, p, model=lambda: generator_provenance(
                p, read_json(model / "provenance.json"), generator.served_models))
            try:
                trees = builder.build_splits(seeds)
            except DiskFull:  # its line says what the cache keeps
                raise
            except StageFailure as e:
                kept = (f"kept in {default_path()}; a rerun resumes from there" if cache
                        else "not kept (simulate.cache is off)")
                raise StageFailure(f"{e}; {generator.model_calls} generation units finished before the failure are "
                                   f"{kept}")
        check_trees(trees, len(seeds), builder.dropped)

        summary = {
            "seed_prompts": len(seeds),
            "trees": len(trees),
            "trees_train": sum(t["split"] == "train" for t in trees),
            "trees_test": sum(t["split"] == "test" for t in trees),
            "dropped": sum(builder.dropped.values()),
            "dropped_by_reason": dict(sorted(builder.dropped.items())),  # prompt_too_long: over the context
            "retries_by_reason": dict(sorted(builder.retries.items())),
            "simulation_seeds": {"train": split_seed(p, "train"), "test": split_seed(p, "test")},
            "resampled": sum("resampled" in t for t in trees),  # train trees with the style control's third branch
            "unresampled_by_reason": dict(sorted(builder.unresampled.items())),
            "cut_replies": builder.cut_replies,  # kept though cut at max_new_tokens (simulate.cut_replies: keep)
            **message_stats(trees, token_counter(model)),
            "relatedness": relatedness_stats(trees),  # hidden instruction vs the user message it replaced
        }
        # Depends on what the cache already held, so it goes to MLflow and the log, not to DVC outputs.
        calls = {"model_calls": generator.model_calls, "cache_hits": generator.cache_hits,
                 "new_tokens": generator.new_tokens}
        write_jsonl(out / "trees.jsonl", trees)
        write_json(out / "summary.json", summary)
        write_text(out / "sample.md", sample_markdown(trees))
        log_results({**summary, **calls}, {k: summary[k] for k in HEADLINE})
        mlflow.log_artifact(str(out / "sample.md"))
    click.echo(f"simulate: {len(trees)} trees of {p.turns} turns from {len(seeds)} prompts "
               f"({summary['dropped']} dropped {summary['dropped_by_reason']}; {builder.cut_replies} replies kept "
               f"though cut at max_new_tokens), "
               + (f"{summary['resampled']} train trees resampled, " if p.resample else "")
               + f"simulation seeds {summary['simulation_seeds']}, "
               f"{generator.model_calls} model calls ({generator.cache_hits} answered from the cache), "
               f"{generator.new_tokens} new tokens")


if __name__ == "__main__":
    main()
