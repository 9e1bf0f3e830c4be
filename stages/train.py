"""Stage train@<variant>-<seed>: a Bradley-Terry reward model with TRL, under `accelerate launch` on one node or
several (music_rm/reward/launch.py: this script launches itself, and trains in the processes accelerate starts)."""
import sys
from pathlib import Path

import click
import torch
from accelerate import PartialState

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, params_option
from music_rm.core.gpu_slots import on_gpu_slot
from music_rm.core.params import load_params
from music_rm.reward import launch
from music_rm.reward.variant import train_variant

# The params this stage reads, all it can read (Params.for_stage) and its params in dvc.yaml (`make deps`)
PARAMS = ("train.accelerate_config", "train.config", "train.variants.{variant}")


@click.command(context_settings=HELP)
@click.option("--variant", required=True, help="A key of train.variants in params.yaml.")
@click.option("--seed", required=True, type=int, help="One of train.seeds: initialisation, shuffling and dropout.")
@params_option
@click.option("--model", default=paths.BASE_MODEL, show_default=True, type=click.Path(path_type=Path),
              help="The base model folder every reward model starts from.")
@click.option("--out", default=paths.REWARD_MODELS, show_default=True, type=click.Path(path_type=Path),
              help="Parent folder of the trained models (<variant>/seed-<seed>).")
@click.option("--reports", default=paths.TRAIN_REPORTS, show_default=True, type=click.Path(path_type=Path),
              help="Parent folder of the pairs manifests (<variant>/pairs, from pairs@<variant>) and of "
                   "metrics.json and curve.csv (<variant>/seed-<seed>).")
@clean_errors
@logged
@on_gpu_slot
def main(variant, seed, params_path, model, out, reports):
    """Train the reward model of one variant and seed with TRL's RewardTrainer, on the nodes of a SLURM allocation
    or of MUSIC_TRAIN_NODES (default: this one), under `accelerate launch` with train.accelerate_config."""
    params = load_params(params_path).for_stage(PARAMS, variant=variant)
    if not launch.in_accelerate():
        sys.exit(launch.launch(params, f"train@{variant}-{seed}", [str(Path(sys.argv[0]).absolute()), *sys.argv[1:]]))
    with launch.training_process():
        state = PartialState(cpu=not torch.cuda.is_available())  # on CPU, DDP over gloo needs this to know its rank
        summary = train_variant(params, variant, seed, model, out, reports, state)
    if summary:
        click.echo(summary)


if __name__ == "__main__":
    main()
