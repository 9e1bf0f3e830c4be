"""The train stage under `accelerate launch` with 2 CPU processes (DDP over gloo) on a tiny model."""
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from music_rm.core.io import read_json, write_jsonl
from music_rm.reward.model import load_reward_model, read_card
from music_rm.data.sources import fetch
from tests.conftest import REPO, repo_params, write_manifests
from tests.test_sources import params as fetch_params


def stage_command(params: dict, variant: str) -> list[str]:
    """dvc.yaml's train command with its ${...} filled in from `params`, as DVC runs it."""
    cmd = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]["cmd"]
    cmd = re.sub(r"\$\{train\.(\w+)\}", lambda m: str(params["train"][m[1]]), cmd)
    cmd = cmd.replace("${item.variant}", variant).replace("${item.seed}", str(params["train"]["seeds"][0]))
    words = cmd.split()
    assert words[0] == "python" and "${" not in cmd
    return [sys.executable, *words[1:]]


def two_process_run(tiny_model, tmp_path, cache=None, **config) -> tuple[list, list[str], dict]:
    """(the training pairs, the command, its environment) of the train stage on 2 CPU processes."""
    train, _, _ = fetch(fetch_params())
    write_jsonl(tmp_path / "train.jsonl", train)
    params = repo_params(train={"config": {"bf16": False, "batch_size": 2, "epochs": 1, "max_length": 384,
                                           "learning_rate": 1e-3, **config},
                                "accelerate_config": "configs/accelerate/cpu_ddp.yaml"})
    params["train"]["variants"] = {"baseline": {"pairs": str(tmp_path / "train.jsonl")}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    write_manifests(tmp_path / "params.yaml", tmp_path / "reports")
    cmd = [*stage_command(params, "baseline"), "--params", str(tmp_path / "params.yaml"), "--model", str(tiny_model),
           "--out", str(tmp_path / "rm"), "--reports", str(tmp_path / "reports")]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "MUSIC_CACHE_DIR": str(cache or tmp_path / "cache")}
    return train, cmd, env


def train_on_two_processes(tiny_model, tmp_path, **config):
    train, cmd, env = two_process_run(tiny_model, tmp_path, **config)
    # train.main_process_port 0 (params.yaml): accelerate picks a free port, two trainings on a node do not share one
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["train"]["main_process_port"] == 0
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return train, result


def test_two_process_ddp_trains_one_model_with_the_global_batch(tiny_model, tmp_path):
    train, result = train_on_two_processes(tiny_model, tmp_path)
    summary = read_json(tmp_path / "reports" / "baseline" / "seed-0" / "metrics.json")
    assert summary["world_size"] == 2
    assert summary["steps"] == -(-len(train) // (2 * 2))  # per-device batch 2 × 2 processes
    assert "on 2 process(es)" in result.stdout
    rm = load_reward_model(str(tmp_path / "rm" / "baseline" / "seed-0"))
    assert all(abs(s) < 1e4 for s in rm.score([train[0]["chosen"], train[0]["rejected"]], 2))
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # only the main process logs
        assert db.execute("select count(*) from runs where name = 'workspace/train@baseline-0'").fetchone()[0] == 1


def test_lora_on_two_processes_exports_a_merged_model_that_scores_as_trained(tiny_model, tmp_path):
    """The export gathers the full weights through accelerate (as under ZeRO-3 or FSDP) and merges them on the
    main process. FSDP itself does not run on CPU processes: accelerate puts them in DDP (docs/gpu.md)."""
    train, _ = train_on_two_processes(tiny_model, tmp_path, lora_r=4, lora_alpha=8, lora_dropout=0.0)
    folder = tmp_path / "rm" / "baseline" / "seed-0"
    assert not list(folder.glob("adapter*"))
    card = read_card(str(folder))
    n = card["reward_stats"]["pairs"]
    with load_reward_model(str(folder)) as rm:
        chosen, rejected = rm.score_pairs(train[:n])
    assert sum(chosen + rejected) / (2 * n) == pytest.approx(card["reward_stats"]["mean"], abs=1e-5)


def test_checkpoints_of_another_process_count_are_not_resumed(tiny_model, tmp_path):
    """A checkpoint of a 1-process run is keyed apart from a 2-process run's (ZeRO-3 and FSDP checkpoints are
    partitioned per process): the 2-process rerun starts over, and removes the killed run's checkpoints as
    abandoned (reward/variant.py: its variant and seed, another number of processes, its process gone)."""
    from tests.test_interrupt import kill_when

    _, cmd, env = two_process_run(tiny_model, tmp_path, save_steps=2)
    # the same params by a hand-run `accelerate launch` of one process
    one_process = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file",
                   "configs/accelerate/cpu_ddp.yaml", "--num_processes", "1", *cmd[cmd.index("stages/train.py"):]]
    checkpoints = tmp_path / "cache" / "checkpoints"
    kill_when(one_process, env, lambda: any(checkpoints.glob("baseline-*/checkpoint-*/trainer_state.json")))
    [folder] = checkpoints.iterdir()
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" not in result.stdout and "on 2 process(es)" in result.stdout
    assert not folder.exists()
    assert (f"{folder}: removed " in result.stderr and "of abandoned checkpoints (made with other train params, pairs, "
            "base model or number of processes)" in result.stderr), result.stderr[-3000:]
