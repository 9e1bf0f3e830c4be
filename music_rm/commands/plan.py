"""What a profile will cost, estimated before renting GPUs: per-GPU memory and host RAM of reward-model
training, the volume of the simulate stage, and whether a vLLM engine and a reward model share a GPU.

    music-rm plan --params params.yaml --accelerate-config configs/accelerate/multi_gpu.yaml \\
        --model-config google/gemma-2-9b-it --gpu-memory-gib 80

Counts, per GPU: weights, gradients and AdamW state in mixed precision (fp32 master weights, gradients and
two moments: 16 bytes per parameter, sharded over the processes under DeepSpeed ZeRO-3 or FSDP full
sharding, replicated under DDP), activations for one micro-batch (chosen and rejected sequences of
`max_length` tokens; per layer 34·h + 5·a·s bytes per token in 16-bit, Korthikanti et al. 2022, the
attention-score term dropped for flash attention; with gradient checkpointing one layer's worth plus each
layer's input), and a fixed allowance for the CUDA context and allocator fragmentation. Host RAM per process
while the model loads: the whole model in fp32 (4 bytes per parameter) when every process loads it, or
under ZeRO-3's sharded initialisation its bf16 share (2 bytes per parameter / processes) plus the
checkpoint shard being read. Simulate: model calls and an upper bound on the tokens (every generation at
its max_new_tokens; prompts from `--prompt-tokens`, the mean length of a seed prompt, growing with the
conversation), and GPU-hours at a throughput you state (`--new-tokens-per-s`, per GPU). Estimates, meant to
rule configurations in or out, not to replace a trial run.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import click
import yaml

from ..core.cli import clean_errors
from ..core.params import load_params
from ..reward.model import HEADROOM

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


def host_ram_gib(parameters: int, processes: int, sharded_init: bool, shard_gib: float) -> float:
    """Host RAM per process while the model loads."""
    if sharded_init:
        return round(2 * parameters / processes / GIB + shard_gib, 2)
    return round(4 * parameters / GIB, 2)


def simulate_volume(trees: int, turns: int, prompt_tokens: int, user: int, rewriter: int, assistant: int,
                    template_tokens: int) -> dict:
    """Model calls and upper bounds on prompt and new tokens of simulating `trees` trees of `turns` turns.
    Per tree and turn: the chosen answer, the rewrite and the hidden answer; between turns, a user message
    per branch. A branch's conversation grows by a user and an assistant message each turn."""
    calls = trees * (3 * turns + 2 * (turns - 1))
    new = trees * (turns * (2 * assistant + rewriter) + (turns - 1) * 2 * user)
    prompt = 0
    for t in range(turns):
        history = prompt_tokens + t * (user + assistant)  # a branch's conversation before turn t + 1's answer
        prompt += 2 * (history + template_tokens)  # the chosen and the hidden answer read the branch
        prompt += template_tokens + user  # the rewriter reads one instruction
        if t < turns - 1:
            prompt += 2 * (template_tokens + history + assistant)  # each branch's user simulator
    return {"trees": trees, "model_calls": calls, "new_tokens_max": new, "prompt_tokens_max": trees * prompt}


def side_by_side(gpu_memory_gib: float, gpus: int, engine_gpus: int, utilization: float, rm_gib: float) -> str:
    """Whether a reward model finds room beside a vLLM engine (best_of_n and a vLLM judge score with RMs)."""
    if gpus > engine_gpus:
        return f"fits: {gpus - engine_gpus} GPU(s) outside the engine take the reward models ({rm_gib:.1f} GiB each)"
    room = (1 - utilization) * gpu_memory_gib
    verdict = "fits" if room >= rm_gib else "does NOT fit"
    return (f"{verdict}: the engine leaves {room:.1f} GiB of each GPU (gpu_memory_utilization {utilization}); "
            f"a reward model needs {rm_gib:.1f} GiB")


@click.command("plan")
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(path_type=Path),
              help="The params file whose train section is planned.")
@click.option("--accelerate-config", default=None, help="Default: train.accelerate_config of --params.")
@click.option("--model-config", required=True, help="config.json, a model folder, or a Hub id.")
@click.option("--gpu-memory-gib", type=float, default=80.0, show_default=True, help="Memory of one GPU.")
@click.option("--gpus", type=int, default=8, show_default=True, help="GPUs of the node that simulates and scores.")
@click.option("--shard-gib", type=float, default=5.0, show_default=True,
              help="Largest checkpoint shard of the base model (read into host RAM whole).")
@click.option("--prompt-tokens", type=int, default=None,
              help="Mean tokens of a seed prompt; with it, simulate's token volume is estimated.")
@click.option("--template-tokens", type=int, default=0, show_default=True,
              help="Tokens of the simulators' instructions and few-shot examples added to each call.")
@click.option("--new-tokens-per-s", type=float, default=None,
              help="Generation throughput per GPU (new tokens/s) you measured; with it, simulate's GPU-hours.")
@clean_errors
def main(params_path, accelerate_config, model_config, gpu_memory_gib, gpus, shard_gib, prompt_tokens,
         template_tokens, new_tokens_per_s):
    """Estimate what a params file (e.g. a profile applied to params.yaml) costs on GPUs."""
    params = load_params(params_path, packages=False)  # a plan for GPUs is made anywhere
    train = params.train
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
    zero3_init = (accel.get("distributed_type") == "DEEPSPEED" and sharded
                  and bool(accel.get("deepspeed_config", {}).get("zero3_init_flag")))
    click.echo(f"host RAM per process while loading: {host_ram_gib(arch.parameters, processes, zero3_init, shard_gib):.2f} "
               f"GiB ({'ZeRO-3 sharded initialisation, bf16' if zero3_init else 'the whole model in fp32'})")

    models = len(train.variants) * len(train.seeds)
    click.echo(f"train: {len(train.variants)} variant(s) × {len(train.seeds)} seed(s) (train.seeds) = {models} models, "
               "one train@<variant>-<seed> stage each, trained one after another; eval scores every one, the other "
               "suites the first seed's")

    sim = params.simulate
    counts = [n for n in (sim.train_prompts, sim.test_prompts) if isinstance(n, int)]
    if len(counts) == 2 and prompt_tokens:
        v = simulate_volume(sum(counts), sim.turns, prompt_tokens, sim.user.max_new_tokens,
                            sim.rewriter.max_new_tokens, sim.assistant.max_new_tokens, template_tokens)
        click.echo(f"simulate: {v['trees']:,} trees × {sim.turns} turns: {v['model_calls']:,} model calls, "
                   f"≤ {v['new_tokens_max']:,} new tokens, ≤ {v['prompt_tokens_max']:,} prompt tokens")
        if new_tokens_per_s:
            click.echo(f"  ≤ {v['new_tokens_max'] / new_tokens_per_s / 3600:,.1f} GPU-hours of generation at "
                       f"{new_tokens_per_s:,.0f} new tokens/s per GPU ({v['new_tokens_max'] / new_tokens_per_s / 3600 / gpus:,.1f} "
                       f"hours on {gpus} GPUs)")
    else:
        click.echo("simulate: give train_prompts and test_prompts as counts and --prompt-tokens for its volume")
    rm_gib = 2 * arch.parameters / GIB * HEADROOM
    engine_gpus = sim.vllm.tensor_parallel_size if sim.backend == "vllm" else 0
    if params.judge.backend == "vllm":
        engine_gpus = max(engine_gpus, params.judge.vllm.tensor_parallel_size)
    click.echo("vLLM engine and a reward model: " + (side_by_side(gpu_memory_gib, gpus, engine_gpus,
               sim.vllm.gpu_memory_utilization, rm_gib) if engine_gpus else
               "no engine in this process (backend openai: the server runs apart)"))

