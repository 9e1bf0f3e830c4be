"""Stage contrast: preference pairs cut from the trees, at the trained K and, held out, at every K."""
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, params_option
from music_rm.core.io import read_jsonl, write_json, write_jsonl
from music_rm.core.outputs import committed_outputs
from music_rm.core.params import load_params
from music_rm.core.tracking import log_results, stage_run
from music_rm.method.contrast import HEADLINE, contrast

# The params this stage reads, all it can read (Params.for_stage) and its params in dvc.yaml (`make deps`)
PARAMS = ("contrast", "train.config.max_length", "train.config.truncation", "train.seeds")


@click.command(context_settings=HELP)
@params_option
@click.option("--trees", default=f"{paths.SIMULATE}/trees.jsonl", show_default=True, type=click.Path(path_type=Path),
              help="MUSIC trees (simulate's output).")
@click.option("--original", default=f"{paths.FETCH}/train.jsonl", show_default=True, type=click.Path(path_type=Path),
              help="The original train pairs.")
@click.option("--model", default=paths.BASE_MODEL, show_default=True, type=click.Path(path_type=Path),
              help="The base model folder: its chat template counts the tokens of each pair, as training does.")
@click.option("--out", default=paths.CONTRAST, show_default=True, type=click.Path(path_type=Path),
              help="Folder for the pair files and summary.json.")
@clean_errors
@logged
def main(params_path, trees, original, model, out):
    """Cut the trees after contrast.turns assistant turns into pairs; build the train sets and the control (one draw
    per training seed, volume_matched/seed-<seed>.jsonl)."""
    params = load_params(params_path).for_stage(PARAMS)
    p = params.contrast
    cfg = params.train.config
    seeds = params.train.seeds
    with committed_outputs(out) as out, \
         stage_run("contrast", params, inputs=[trees, original, model],
                   environment_file=out / "environment.json"):
        sets, draws, lengths = contrast(read_jsonl(original), read_jsonl(trees), p.turns, seeds, str(model),
                                        cfg.max_length, cfg.truncation, p.min_relatedness)
        for name, rows in sets.items():
            write_jsonl(out / f"{name}.jsonl", rows)
        control = out / Path(paths.VOLUME_MATCHED).name
        for seed, rows in draws.items():
            write_jsonl(control / f"{paths.seed_name(seed)}.jsonl", rows)
        summary = {"k": p.turns, **{f"pairs_{name}": len(rows) for name, rows in sets.items()},
                   "pairs_train_volume_matched": len(draws[seeds[0]]),
                   "max_length": cfg.max_length, "truncation": cfg.truncation, **lengths}
        write_json(out / "summary.json", summary)
        log_results(summary, {k: summary[k] for k in HEADLINE})
    click.echo(f"contrast: K={p.turns}: {summary['pairs_train']} train / {summary['pairs_test']} test MUSIC pairs, "
               f"{summary['pairs_train_with_original']} pairs with the originals, "
               f"{summary['pairs_test_by_k']} held-out pairs over every K")
    click.echo(f"contrast: MUSIC train pairs that will train at {cfg.max_length} tokens ({cfg.truncation}), by K: "
               + ", ".join(f"{k}: {c['fit']}/{c['pairs']}" for k, c in lengths["music_by_k"].items())
               + f"; volume-matched control: {summary['pairs_train_volume_matched']} pairs, drawn once per training "
                 f"seed ({len(seeds)})")
    kept = lengths["relatedness"]
    click.echo(f"contrast: train trees whose hidden instructions have relatedness >= {kept['min']}: {kept['kept']} kept, "
               f"{kept['dropped']} dropped, of {kept['train_trees']}")


if __name__ == "__main__":
    main()
