"""Checks that need a CUDA GPU; skipped without one. On a GPU machine: `pytest -m gpu -s tests/test_gpu.py`.

The train stage under `accelerate launch` with a random-init model of Gemma-2's architecture (eager attention,
bf16 mixed precision, gradient checkpointing), then scoring with the trained folder: the rewards the trained
model gave in memory at the end of training (reward_model.json) and the rewards `score` gives from the folder
agree. The same under DeepSpeed ZeRO-3 on one GPU, full fine-tuning and LoRA, when deepspeed is installed.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from music_rm.core.io import read_json, write_jsonl
from music_rm.reward.model import load_reward_model, read_card
from music_rm.data.sources import fetch
from tests.conftest import REPO, make_tiny_model, repo_params, write_manifests
from tests.test_sources import params as fetch_params

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def gemma2(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("gemma2"), arch="gemma2", layers=4, hidden=256, heads=4)


def train_stage(tmp_path: Path, model: Path, accelerate_config: str, **config) -> tuple[Path, dict, list[dict]]:
    """Run stages/train.py under accelerate launch on the embedded train pairs; (model folder, metrics, pairs)."""
    train, _, _ = fetch(fetch_params())
    write_jsonl(tmp_path / "train.jsonl", train)
    params = repo_params(train={"config": {"bf16": True, "batch_size": 8, "epochs": 3, "max_length": 512,
                                           "learning_rate": 1e-4, "attn_implementation": "eager",
                                           "gradient_checkpointing": True, **config}})
    params["train"]["variants"] = {"baseline": {"pairs": str(tmp_path / "train.jsonl")}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    write_manifests(tmp_path / "params.yaml", tmp_path / "reports")
    accelerate = Path(sys.executable).parent / "accelerate"
    result = subprocess.run(
        [str(accelerate), "launch", "--config_file", accelerate_config, "--num_processes", "1", "stages/train.py",
         "--variant", "baseline", "--seed", "0", "--params", str(tmp_path / "params.yaml"), "--model", str(model),
         "--out", str(tmp_path / "rm"), "--reports", str(tmp_path / "reports")],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    print(result.stdout.strip().splitlines()[-1])
    return (tmp_path / "rm" / "baseline" / "seed-0", read_json(tmp_path / "reports" / "baseline" / "seed-0" / "metrics.json"),
            train)


def agreement(folder: Path, pairs: list[dict], report) -> None:
    """Score-time rewards (the folder loaded as `score` loads it: GPU, bf16) against the train-time ones."""
    card = read_card(str(folder))
    assert card["attn_implementation"] == "eager"
    rm = load_reward_model(str(folder))
    assert rm.model.device.type == "cuda" and rm.model.config._attn_implementation == "eager"
    n = card["reward_stats"]["pairs"]
    rewards = torch.tensor(rm.score([p["chosen"] for p in pairs[:n]] + [p["rejected"] for p in pairs[:n]], 8),
                           dtype=torch.float64)
    accuracy = float((rewards[:n] > rewards[n:]).double().mean())
    trained = card["reward_stats"]
    line = (f"{folder}: train time (in memory, as trained) mean {trained['mean']:.4f} std {trained['std']:.4f} "
            f"accuracy {trained['accuracy']:.3f}; score time (folder, bf16) mean {float(rewards.mean()):.4f} "
            f"std {float(rewards.std(unbiased=False)):.4f} accuracy {accuracy:.3f} on {n} pairs")
    print(line)
    report(line)
    tolerance = 0.02 * trained["std"] + 1e-2  # bf16 scoring of a model trained with fp32 master weights
    assert abs(float(rewards.mean()) - trained["mean"]) <= tolerance
    assert abs(float(rewards.std(unbiased=False)) - trained["std"]) <= tolerance
    assert abs(accuracy - trained["accuracy"]) <= 0.05


def test_gemma2_train_stage_on_gpu_scores_as_trained(gemma2, tmp_path, report):
    folder, metrics, pairs = train_stage(tmp_path, gemma2, "configs/accelerate/default.yaml")
    assert metrics["pairs_used"] == metrics["pairs"] and metrics["world_size"] == 1
    agreement(folder, pairs, report)


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs deepspeed")
@pytest.mark.parametrize("lora_r", [None, 8])
def test_gemma2_zero3_on_one_gpu_scores_as_trained(gemma2, tmp_path, report, lora_r):
    folder, metrics, pairs = train_stage(tmp_path, gemma2, "configs/accelerate/deepspeed_zero3.yaml",
                                         **({"lora_r": lora_r, "lora_alpha": 16} if lora_r else {}))
    assert metrics["pairs_used"] == metrics["pairs"]
    assert not list(folder.glob("adapter*"))
    agreement(folder, pairs, report)
