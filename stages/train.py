"""Stage train@<variant>: a Bradley-Terry reward model with TRL, run under `accelerate launch`."""
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import click
import torch
from accelerate import PartialState

from music_rm.core import paths
from music_rm.core.cli import HELP, clean_errors, logged, params_option
from music_rm.core.io import file_digest, read_json, readable_files, write_json, write_text
from music_rm.core.outputs import committed_outputs
from music_rm.core.params import load_params
from music_rm.core.paths import cache_root
from music_rm.core.tracking import input_hashes, log_model_reference, numeric, stage_run, trainer_callback
from music_rm.data.conversation import read_pairs
from music_rm.reward.card import artifact_name, model_card, share_hint, training_data
from music_rm.reward.curve import write_curve
from music_rm.reward.model import read_card
from music_rm.reward.train import train_reward_model


@click.command(context_settings=HELP)
@click.option("--variant", required=True, help="A key of train.variants in params.yaml.")
@params_option
@click.option("--model", default=paths.BASE_MODEL, show_default=True, type=click.Path(path_type=Path),
              help="The base model folder every reward model starts from.")
@click.option("--out", default=paths.REWARD_MODELS, show_default=True, type=click.Path(path_type=Path),
              help="Parent folder of the trained models (one folder per variant).")
@click.option("--reports", default=paths.TRAIN_REPORTS, show_default=True, type=click.Path(path_type=Path),
              help="Parent folder of metrics.json and curve.csv (one folder per variant).")
@clean_errors
@logged
def main(variant, params_path, model, out, reports):
    """Train the reward model of one variant with TRL's RewardTrainer (run under `accelerate launch`)."""
    params = load_params(params_path)
    p = params.train
    v = p.variant(variant)
    state = PartialState(cpu=not torch.cuda.is_available())  # on CPU, DDP over gloo needs this to know its rank
    out_dir, partial = out / variant, out / f".{variant}.partial"
    run_params = {"train": {"config": p.config.model_dump(mode="json"), "variant": v.model_dump(mode="json"),
                            "accelerate_config": p.accelerate_config}}
    if state.is_main_process and partial.exists():  # left by a killed run
        shutil.rmtree(partial)
    state.wait_for_everyone()
    # Checkpoints (train.config.save_steps) outlive a crash outside DVC outputs, in a folder named by
    # everything that shapes the run, so a rerun resumes only a run of the same config, data, model and number
    # of processes (ZeRO-3 and FSDP checkpoints are partitioned per process).
    run_key = hashlib.sha256(json.dumps([run_params, input_hashes([model, v.pairs]), str(model), state.num_processes],
                                        sort_keys=True).encode()).hexdigest()[:16]
    checkpoints = cache_root() / "checkpoints" / f"{variant}-{run_key}"
    outputs = committed_outputs(out, reports) if state.is_main_process else contextlib.nullcontext((out, reports))
    with outputs as (staged_models, staged_reports), \
         (stage_run(f"train@{variant}", params, run_params, inputs=[model, v.pairs],
                    environment_file=staged_reports / variant / "environment.json")
          if state.is_main_process else contextlib.nullcontext()) as mlflow, \
         (contextlib.nullcontext(str(checkpoints)) if p.config.save_steps
          else tempfile.TemporaryDirectory()) as work_dir:
        pairs = read_pairs(v.pairs)
        summary, curve = train_reward_model(str(model), pairs, p.config, str(partial), work_dir,
                                            callbacks=[trainer_callback(mlflow)] if mlflow else [])
        resumed_from = summary.pop("resumed_from", None)
        state.wait_for_everyone()
        if state.is_main_process:
            provenance = read_json(model / "provenance.json") if (model / "provenance.json").is_file() else {}
            write_text(partial / "README.md", model_card(variant, provenance, input_hashes([v.pairs]), summary,
                                                         p.config.model_dump(mode="json"), read_card(str(partial)),
                                                         training_data(pairs)))
            readable_files(partial)
            os.replace(partial, staged_models / variant)
            if resumed_from:
                mlflow.set_tag("resumed_from", resumed_from)
                click.echo(f"train@{variant}: resumed from {checkpoints / resumed_from}")
            write_json(staged_reports / variant / "metrics.json", summary)
            write_curve(staged_reports / variant / "curve.csv", curve)
            mlflow.log_metrics(numeric(summary))
            mlflow.log_artifact(str(staged_reports / variant / "curve.csv"))
            mlflow.log_artifact(str(staged_models / variant / "README.md"))  # the model card
            # the model by reference: its path and weights hash, not a copy in the MLflow store
            weights = file_digest(staged_models / variant / "model.safetensors")
            mlflow.set_tags({"model.path": out_dir.as_posix(), "model.sha256": weights})
            log_model_reference(mlflow, artifact_name(variant), out_dir.as_posix(), weights)
            click.echo(f"train@{variant}: {summary['pairs_used']}/{summary['pairs']} pairs "
                       f"({summary['pairs_truncated']} truncated, {summary['pairs_dropped_too_long']} dropped: "
                       f"longer than {summary['max_length']} tokens), padding {summary['padding_fraction']:.1%}, "
                       f"{summary['steps']} steps on {summary['world_size']} process(es), "
                       f"final loss {summary['final_loss']:.4f} → {out_dir}\n  {share_hint(variant)}")

    if state.is_main_process:  # once the model is in place
        shutil.rmtree(checkpoints, ignore_errors=True)


if __name__ == "__main__":
    main()
