"""The memory planner: architecture counts and how sharding, checkpointing and attention change the estimate."""
import subprocess
import sys

import pytest

from music_rm.plan import architecture, estimate, sharding
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
    subprocess.run([sys.executable, "-m", "music_rm.profile", "profiles/paper.yaml", "--out", str(tmp_path / "p.yaml")],
                   cwd=REPO, check=True)
    result = subprocess.run([sys.executable, "-m", "music_rm.plan", "--params", str(tmp_path / "p.yaml"),
                             "--model-config", str(tmp_path / "config.json"), "--gpu-memory-gib", "80"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "9.24 B parameters; 8 process(es), sharded (ZeRO-3/FSDP)" in result.stdout and "— fits" in result.stdout


def test_every_committed_accelerate_config_is_understood():
    import yaml

    expected = {"default.yaml": (1, False), "cpu_ddp.yaml": (2, False), "multi_gpu.yaml": (8, False),
                "deepspeed_zero3.yaml": (8, True), "fsdp.yaml": (8, True)}
    for name, plan in expected.items():
        assert sharding(yaml.safe_load((REPO / "configs" / "accelerate" / name).read_text())) == plan, name
