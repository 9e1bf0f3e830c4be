"""Stage pairs@<variant>: one manifest per training seed standing for the pairs that seed trains on (its file and
hash), the dependency of train@<variant>-<seed> (why: music_rm/reward/pairs.py)."""
from pathlib import Path

import click

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, params_option
from music_rm.core.params import load_params
from music_rm.reward.pairs import write_pairs_manifests

# The params this stage reads, all it can read (Params.for_stage) and its params in dvc.yaml (`make deps`)
PARAMS = ("train.variants.{variant}", "train.seeds")


@click.command(context_settings=HELP)
@click.option("--variant", required=True, help="A key of train.variants in params.yaml.")
@params_option
@click.option("--reports", default=paths.TRAIN_REPORTS, show_default=True, type=click.Path(path_type=Path),
              help="Parent folder of the manifests (<variant>/pairs/seed-<seed>.json).")
@clean_errors
@logged
def main(variant, params_path, reports):
    """Write the pairs manifest of each training seed of one variant."""
    manifests = write_pairs_manifests(load_params(params_path, packages=False).for_stage(PARAMS, variant=variant),
                                      variant, reports)
    click.echo(f"pairs@{variant}: " + ", ".join(f"{name.removesuffix('.json')}: {m['pairs']}"
                                                for name, m in manifests.items()))


if __name__ == "__main__":
    main()
