"""One (variant, seed) reward model as the train stage makes it: staged outputs, an MLflow run, resumable
checkpoints, the trained folder with its model card, metrics.json and curve.csv (stages/train.py is its command
line); it trains on the pairs its manifest names (reward/pairs.py)."""
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

from ..core.disk import folder_size, size
from ..core.io import file_digest, read_json, readable_files, write_json, write_text
from ..core.outputs import committed_outputs, process_alive
from ..core.params import Params, TrainParams
from ..core.paths import cache_root, seed_name
from ..core.tracking import input_hashes, log_model_reference, log_results, stage_run, trainer_callback
from ..data.conversation import read_pairs
from .card import artifact_name, model_card, share_hint, training_data
from .curve import write_curve
from .launch import check_shared_folders
from .model import read_card
from .pairs import manifest_pairs
from .train import train_reward_model

# the training summary's numbers a pipeline run carries (tracking.log_results)
HEADLINE = ("final_loss", "mean_loss", "pairs_used", "pairs_seen", "steps")

log = logging.getLogger(__name__)


def checkpoint_folder(run_params: dict, model: Path, pairs: str, variant: str, processes: int) -> Path:
    """Checkpoints (train.config.save_steps) outlive a crash outside DVC outputs, in a folder named by everything
    that shapes the run, so a rerun resumes only a run of the same config, data, model and number of processes
    (ZeRO-3 and FSDP checkpoints are partitioned per process)."""
    run_key = hashlib.sha256(json.dumps([run_params, input_hashes([model, pairs]), str(model), processes],
                                        sort_keys=True).encode()).hexdigest()[:16]
    return cache_root() / "checkpoints" / f"{variant}-{run_key}"


OWNER_FILE = "owner.json"  # in a checkpoint folder: the host and process of the run that trains into it
CHECKPOINTS_NAME = re.compile(r"(?P<variant>.+)-seed-(?P<seed>\d+)-[0-9a-f]{16}")


def claim_checkpoints(folder: Path) -> None:
    """Mark `folder` as the checkpoints of this process's run, so no other run removes them while it lives."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / OWNER_FILE, {"host": socket.gethostname(), "pid": os.getpid()})


def remove_abandoned_checkpoints(params: TrainParams, keep: Path) -> list[str]:
    """Remove the checkpoint folders beside `keep` that no run will resume: those of `keep`'s variant and seed made
    with other params, data or model (a params change, a killed run), and those of a variant or seed that
    `params` no longer has, unless the process that trains into them still runs. Returns one line per folder
    removed, with its size."""
    mine = CHECKPOINTS_NAME.fullmatch(keep.name)
    removed = []
    for folder in sorted(keep.parent.iterdir()) if keep.parent.is_dir() else []:
        found = CHECKPOINTS_NAME.fullmatch(folder.name)
        if folder == keep or not found or not folder.is_dir():
            continue
        variant, seed = found["variant"], int(found["seed"])
        if variant not in params.variants:
            why = f"variant {variant} is not in train.variants"
        elif seed not in params.seeds:
            why = f"seed {seed} is not in train.seeds"
        elif (variant, found["seed"]) == (mine["variant"], mine["seed"]):
            why = "made with other train params, pairs, base model or number of processes"
        else:
            continue
        owner = folder / OWNER_FILE
        if owner.is_file() and process_alive(**read_json(owner)):
            continue
        size_text = size(folder_size(folder))
        shutil.rmtree(folder)
        removed.append(f"{folder}: removed {size_text} of abandoned checkpoints ({why})")
    return removed


def train_variant(params: Params, variant: str, seed: int, model: Path, out: Path, reports: Path,
                  state) -> str | None:
    """Train (variant, seed) from the base model folder `model` into `out`/<variant>/seed-<seed>, with its
    metrics.json and curve.csv in `reports`/<variant>/seed-<seed>, on the pairs its manifest names; `state` is
    accelerate's PartialState; `params`: the stage's view (stages/train.py's PARAMS), which has no train.seeds, so
    that a new seed trains only its own models (a seed without a pairs manifest stops at manifest_pairs). Returns
    the stage's summary line on the main process (None on the others)."""
    p = params.train
    pairs_file = manifest_pairs(reports, variant, seed)
    entry, name = seed_name(seed), f"train@{variant}-{seed}"  # the DVC stage and its MLflow run
    out_dir, partial = out / variant / entry, out / variant / f".{entry}.partial"
    run_params = {**params.declared(), "seed": seed, "pairs": pairs_file}
    check_shared_folders(state, {"cache": cache_root(), "model folder": out})
    if state.is_main_process and partial.exists():  # left by a killed run
        shutil.rmtree(partial)
    state.wait_for_everyone()
    checkpoints = checkpoint_folder(run_params, model, pairs_file, f"{variant}-{entry}", state.num_processes)
    main = state.is_main_process
    if main:
        # which variants and seeds params.yaml still has: the whole file, as the cleanup changes no output
        for line in remove_abandoned_checkpoints(params.whole.train, checkpoints):
            log.info(line)
        if p.config.save_steps:
            claim_checkpoints(checkpoints)
    folders = (out / variant, reports / variant)
    outputs = committed_outputs(*folders) if main else contextlib.nullcontext(folders)
    with outputs as (staged_models, staged_reports), \
         (stage_run(name, params, inputs=[model, pairs_file],
                    environment_file=staged_reports / entry / "environment.json")
          if main else contextlib.nullcontext()) as mlflow, \
         (contextlib.nullcontext(str(checkpoints)) if p.config.save_steps
          else tempfile.TemporaryDirectory()) as work_dir:
        pairs = read_pairs(pairs_file)
        summary, curve = train_reward_model(str(model), pairs, p.config, seed, str(partial), work_dir,
                                            callbacks=[trainer_callback(mlflow)] if mlflow else [])
        resumed_from = summary.pop("resumed_from", None)
        state.wait_for_everyone()
        if not main:
            return None
        provenance = read_json(model / "provenance.json") if (model / "provenance.json").is_file() else {}
        write_text(partial / "README.md", model_card(variant, provenance, input_hashes([pairs_file]), summary,
                                                     p.config.model_dump(mode="json"), read_card(str(partial)),
                                                     training_data(pairs)))
        readable_files(partial)
        os.replace(partial, staged_models / entry)
        write_json(staged_reports / entry / "metrics.json", summary)
        write_curve(staged_reports / entry / "curve.csv", curve)
        log_results(summary, {k: summary[k] for k in HEADLINE if k in summary})
        mlflow.log_artifact(str(staged_reports / entry / "curve.csv"))
        mlflow.log_artifact(str(staged_models / entry / "README.md"))  # the model card
        if resumed_from:
            mlflow.set_tag("resumed_from", resumed_from)
        # the model by reference: its path and weights hash, not a copy in the MLflow store
        weights = file_digest(staged_models / entry / "model.safetensors")
        mlflow.set_tags({"model.path": out_dir.as_posix(), "model.sha256": weights})
        log_model_reference(mlflow, artifact_name(variant), out_dir.as_posix(), weights)
    shutil.rmtree(checkpoints, ignore_errors=True)  # once the model is in place
    resumed = f"{name}: resumed from {checkpoints / resumed_from}\n" if resumed_from else ""
    return (f"{resumed}{name}: {summary['pairs_used']}/{summary['pairs']} pairs "
            f"({summary['pairs_truncated']} truncated, {summary['pairs_dropped_too_long']} dropped: "
            f"longer than {summary['max_length']} tokens), padding {summary['padding_fraction']:.1%}, "
            f"{summary['steps']} steps on {summary['world_size']} process(es) saw {summary['pairs_seen']} pairs "
            f"({summary['distinct_pairs_seen']} distinct), "
            f"final loss {summary['final_loss']:.4f} → {out_dir}\n  {share_hint(variant)}")
