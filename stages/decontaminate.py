"""Stage decontaminate: the training prompts that share a word n-gram with an evaluation suite's prompts, counted per
suite; with decontaminate.drop, the training items contrast leaves out (music_rm/evaluation/contamination.py)."""
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, params_option
from music_rm.core.io import read_jsonl, write_json, write_jsonl
from music_rm.core.outputs import committed_outputs
from music_rm.core.params import load_params
from music_rm.core.tracking import log_results, stage_run
from music_rm.data.conversation import read_pairs
from music_rm.evaluation.contamination import decontaminate, headline, suite_files

# The params this stage reads, all it can read (Params.for_stage) and its params in dvc.yaml (`make deps`)
PARAMS = ("decontaminate", "judge.pair_sets", "best_of_n.prompt_sets", "mt_bench.sources", "reward_bench.sources",
          "reward_bench.on_invalid")


@click.command(context_settings=HELP)
@params_option
@click.option("--original", default=f"{paths.FETCH}/train.jsonl", show_default=True, type=click.Path(path_type=Path),
              help="The original train pairs.")
@click.option("--reserve", default=f"{paths.FETCH}/reserve.jsonl", show_default=True, type=click.Path(path_type=Path),
              help="The original pairs in reserve (fetch.reserve_fraction): training data of the diversity-matched "
                   "control, counted and left out as the train pairs are.")
@click.option("--heldout", default=f"{paths.FETCH}/test.jsonl", show_default=True, type=click.Path(path_type=Path),
              help="The held-out original pairs.")
@click.option("--trees", default=f"{paths.SIMULATE}/trees.jsonl", show_default=True, type=click.Path(path_type=Path),
              help="MUSIC trees (simulate's output): the train trees are training data, the test trees a suite.")
@click.option("--out", default=paths.DECONTAMINATE, show_default=True, type=click.Path(path_type=Path),
              help="Folder for summary.json, overlaps.jsonl and dropped.json.")
@clean_errors
@logged
def main(params_path, original, reserve, heldout, trees, out):
    """Count the training prompts and suite items that share an n-gram, per suite; list what contrast leaves out."""
    params = load_params(params_path).for_stage(PARAMS)
    with committed_outputs(out) as out, \
         stage_run("decontaminate", params, inputs=[original, reserve, heldout, trees, *suite_files(params)],
                   environment_file=out / "environment.json"):
        summary, overlapping, dropped = decontaminate(params, read_pairs(original) + read_pairs(reserve),
                                                      read_pairs(heldout), read_jsonl(trees))
        write_json(out / "summary.json", summary)
        write_jsonl(out / "overlaps.jsonl", overlapping)
        write_json(out / "dropped.json", dropped)
        log_results(summary, headline(summary))
    click.echo(f"decontaminate: {summary['ngram']}-grams; training: {summary['training']['original_pairs']} original "
               f"pairs, {summary['training']['music_trees']} MUSIC trees; overlapping a suite: "
               f"{summary['overlapping']['original_pairs']} pairs, {summary['overlapping']['music_trees']} trees; "
               f"left out (decontaminate.drop {str(summary['drop']).lower()}): {summary['dropped']['original_pairs']} "
               f"pairs, {summary['dropped']['music_trees']} trees")
    for name, c in summary["suites"].items():
        click.echo(f"decontaminate: {name}: " + (f"not counted: {c['not_counted']}" if "not_counted" in c else
                   f"{c['items_overlapping']} of {c['items']} items overlap training; training overlapping it: "
                   f"{c['original_pairs_overlapping']} original pairs, {c['music_trees_overlapping']} MUSIC trees"))


if __name__ == "__main__":
    main()
