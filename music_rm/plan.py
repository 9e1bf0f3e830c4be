"""Per-GPU memory of reward-model training, estimated before renting GPUs.

    python -m music_rm.plan --params params.yaml --accelerate-config configs/accelerate/multi_gpu.yaml \\
        --model-config google/gemma-2-9b-it --gpu-memory-gib 80

Counts, per GPU: weights, gradients and AdamW state in mixed precision (fp32 master weights, gradients and
two moments: 16 bytes per parameter, sharded over the processes under DeepSpeed ZeRO-3 or FSDP full
sharding, replicated under DDP), activations for one micro-batch (chosen and rejected sequences of
`max_length` tokens; per layer 34·h + 5·a·s bytes per token in 16-bit, Korthikanti et al. 2022, the
attention-score term dropped for flash attention; with gradient checkpointing one layer's worth plus each
layer's input), and a fixed allowance for the CUDA context and allocator fragmentation. An estimate, meant
to rule configurations in or out, not to replace a trial step.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import click
import yaml

from .cli import clean_errors
from .params import build_section

GIB = 1024**3
OVERHEAD_GIB = 2.0  # CUDA context, NCCL buffers, fragmentation


@dataclass(frozen=True)
class Architecture:
    parameters: int
    hidden: int
    layers: int
    heads: int


def architecture(config: dict) -> Architecture:
    """From a transformers config.json (decoder-only, tied or untied embeddings, no LM head in an RM)."""
    h, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    head_dim = config.get("head_dim") or h // heads
    ffn = config["intermediate_size"]
    attention = h * head_dim * (heads + 2 * kv_heads) + heads * head_dim * h
    mlp = 3 * h * ffn  # gated MLP: gate, up, down
    norms = 4 * h  # up to four norms per layer (Gemma-2 has pre and post norms)
    return Architecture(parameters=vocab * h + layers * (attention + mlp + norms) + h + h, hidden=h, layers=layers,
                        heads=heads)


def load_model_config(name: str) -> dict:
    """A config.json path, a model folder, or a Hub id (read through transformers, so it needs the Hub)."""
    path = Path(name)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(name).to_dict()


def sharding(accelerate_config: dict) -> tuple[int, bool]:
    """(processes, whether weights, gradients and optimizer state are sharded over them)."""
    processes = int(accelerate_config.get("num_processes", 1))
    kind = str(accelerate_config.get("distributed_type", "NO"))
    zero3 = kind == "DEEPSPEED" and int(accelerate_config.get("deepspeed_config", {}).get("zero_stage", 0)) == 3
    fsdp_config = accelerate_config.get("fsdp_config", {})
    fsdp = kind == "FSDP" and (fsdp_config.get("fsdp_reshard_after_forward", True) is True
                               or "FULL_SHARD" in str(fsdp_config.get("fsdp_sharding_strategy", "")))
    return processes, zero3 or fsdp


def estimate(arch: Architecture, batch_size: int, max_length: int, gradient_checkpointing: bool,
             attn_implementation: str | None, processes: int, sharded: bool) -> dict:
    """GiB per GPU, by part."""
    states = 16 * arch.parameters / (processes if sharded else 1)
    sequences, s, h, a = 2 * batch_size, max_length, arch.hidden, arch.heads
    attention_scores = 0 if attn_implementation == "flash_attention_2" else 5 * a * s
    per_layer = sequences * s * (34 * h + attention_scores)
    layer_inputs = sequences * s * h * 2
    activations = per_layer + arch.layers * layer_inputs if gradient_checkpointing else arch.layers * per_layer
    parts = {"weights": 4 * arch.parameters / (processes if sharded else 1), "gradients": states / 4,
             "optimizer": states / 2, "activations": activations}
    out = {k: round(v / GIB, 2) for k, v in parts.items()}
    out["overhead"] = OVERHEAD_GIB
    out["total"] = round(sum(parts.values()) / GIB + OVERHEAD_GIB, 2)
    return out


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(path_type=Path))
@click.option("--accelerate-config", default=None, help="Default: train.accelerate_config of --params.")
@click.option("--model-config", required=True, help="config.json, a model folder, or a Hub id.")
@click.option("--gpu-memory-gib", type=float, default=80.0, show_default=True)
@clean_errors
def main(params_path, accelerate_config, model_config, gpu_memory_gib):
    params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    train = build_section("train", params, str(params_path))
    accel = yaml.safe_load(Path(accelerate_config or train.accelerate_config).read_text(encoding="utf-8"))
    processes, sharded = sharding(accel)
    arch = architecture(load_model_config(model_config))
    c = train.config
    est = estimate(arch, c.batch_size, c.max_length, c.gradient_checkpointing, c.attn_implementation, processes, sharded)
    click.echo(f"{model_config}: {arch.parameters / 1e9:.2f} B parameters; {processes} process(es), "
               f"{'sharded (ZeRO-3/FSDP)' if sharded else 'replicated (DDP)'}; micro-batch {c.batch_size} pairs × "
               f"{c.max_length} tokens, gradient checkpointing {'on' if c.gradient_checkpointing else 'off'}, "
               f"attention {c.attn_implementation or 'default'}")
    for part, gib in est.items():
        click.echo(f"  {part:12s} {gib:8.2f} GiB")
    verdict = "fits" if est["total"] <= gpu_memory_gib else "does NOT fit"
    click.echo(f"per GPU: {est['total']:.2f} GiB of {gpu_memory_gib:.0f} GiB — {verdict}")


if __name__ == "__main__":
    main()
