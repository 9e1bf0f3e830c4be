"""The memory planner: architecture counts and how sharding, checkpointing and attention change the estimate."""
import subprocess
import sys

import pytest

from music_rm.commands.plan import architecture, estimate, host_ram_gib, sharding, side_by_side, simulate_volume
from tests.conftest import REPO

# Gemma-2-9B's published architecture (config.json of google/gemma-2-9b-it)
GEMMA2_9B = {"hidden_size": 3584, "num_hidden_layers": 42, "num_attention_heads": 16, "num_key_value_heads": 8,
             "head_dim": 256, "intermediate_size": 14336, "vocab_size": 256000}


def test_gemma2_9b_parameter_count():
    assert architecture(GEMMA2_9B).parameters == pytest.approx(9.24e9, rel=0.01)


def test_tiny_model_count_matches_the_real_model(tiny_model):
    import json

    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    counted = sum(p.numel() for p in model.parameters())
    config = json.loads((tiny_model / "config.json").read_text())
    # the score head (hidden × 1) is the only part not counted; norms are over-counted at most 2h per layer
    assert architecture(config).parameters == pytest.approx(counted, rel=0.02)


def test_sharding_checkpointing_and_flash_attention_lower_the_estimate():
    arch = architecture(GEMMA2_9B)
    ddp = estimate(arch, 2, 2048, True, "eager", 8, sharded=False)
    zero3 = estimate(arch, 2, 2048, True, "eager", 8, sharded=True)
    assert ddp["weights"] + ddp["gradients"] + ddp["optimizer"] == pytest.approx(16 * arch.parameters / 2**30, rel=1e-3)
    assert zero3["optimizer"] == pytest.approx(ddp["optimizer"] / 8, rel=1e-2)
    assert ddp["total"] > 80 > zero3["total"]
    no_ckpt = estimate(arch, 2, 2048, False, "eager", 8, sharded=True)
    flash = estimate(arch, 2, 2048, False, "flash_attention_2", 8, sharded=True)
    assert no_ckpt["activations"] > flash["activations"] > zero3["activations"]
    assert sharding({"distributed_type": "DEEPSPEED", "num_processes": 8, "deepspeed_config": {"zero_stage": 3}}) == (8, True)
    assert sharding({"distributed_type": "MULTI_GPU", "num_processes": 8}) == (8, False)


def test_plan_command_on_the_paper_profile(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps(GEMMA2_9B))
    subprocess.run([sys.executable, "-m", "music_rm", "profile", "profiles/paper.yaml", "--out", str(tmp_path / "p.yaml")],
                   cwd=REPO, check=True)
    result = subprocess.run([sys.executable, "-m", "music_rm", "plan", "--params", str(tmp_path / "p.yaml"),
                             "--model-config", str(tmp_path / "config.json"), "--gpu-memory-gib", "80",
                             "--prompt-tokens", "300", "--new-tokens-per-s", "1000"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "9.24 B parameters; 8 process(es), sharded (ZeRO-3/FSDP)" in result.stdout and "— fits" in result.stdout
    assert "host RAM per process while loading: 7.15 GiB (ZeRO-3 sharded initialisation, bf16)" in result.stdout
    # 31,000 + 1,000 trees of 5 turns, each 3 calls a turn and 2 between turns: 32,000 × 23 = 736,000
    assert "simulate: 32,000 trees × 5 turns: 736,000 model calls" in result.stdout
    assert "GPU-hours of generation at 1,000 new tokens/s per GPU" in result.stdout


def test_host_ram_simulate_volume_and_engine_room():
    params = 9_241_705_984
    assert host_ram_gib(params, 8, sharded_init=False, shard_gib=5) == round(4 * params / 2**30, 2)  # ≈ 37 GB
    assert host_ram_gib(params, 8, sharded_init=True, shard_gib=5) == round(2 * params / 8 / 2**30 + 5, 2)
    v = simulate_volume(trees=10, turns=2, prompt_tokens=100, user=5, rewriter=7, assistant=20, template_tokens=0)
    assert v["model_calls"] == 10 * (3 * 2 + 2 * 1)
    assert v["new_tokens_max"] == 10 * (2 * (2 * 20 + 7) + 1 * 2 * 5)
    # turn 1: 2 answers × 100 + rewrite 5 + 2 users × (100 + 20); turn 2: 2 answers × (100 + 25) + rewrite 5
    assert v["prompt_tokens_max"] == 10 * (200 + 5 + 240 + 250 + 5)
    assert side_by_side(80, 8, 1, 0.9, 20).startswith("fits: 7 GPU(s) outside the engine")
    assert side_by_side(80, 1, 1, 0.9, 20).startswith("does NOT fit: the engine leaves 8.0 GiB")
    assert side_by_side(80, 1, 1, 0.5, 20).startswith("fits: the engine leaves 40.0 GiB")


def test_every_committed_accelerate_config_is_understood():
    import yaml

    expected = {"default.yaml": (1, False), "cpu_ddp.yaml": (2, False), "multi_gpu.yaml": (8, False),
                "deepspeed_zero3.yaml": (8, True), "fsdp.yaml": (8, True)}
    for name, plan in expected.items():
        assert sharding(yaml.safe_load((REPO / "configs" / "accelerate" / name).read_text())) == plan, name
