"""Reward-model training throughput on a GPU: a random-init model with Gemma-2-2B's architecture, bf16.

    python bench/train_gpu.py                      # on a CUDA GPU; prints tokens/s, step time and MFU
    python bench/train_gpu.py --small              # a 2-layer version on the CPU, to check the script runs

Bradley-Terry loss on random token pairs (chosen and rejected of --seq-len tokens each), AdamW, gradient
checkpointing on. `--precision mixed` (default) is what the train stage does: fp32 weights and optimizer
state, bf16 autocast; `bf16` keeps weights and optimizer state in bf16 (what ZeRO-3 computes with).
MFU = model FLOP/s over the GPU's peak dense bf16 FLOP/s (--peak-tflops: 989 for the H100 SXM and the H200,
NVIDIA's datasheets, without sparsity): 6 FLOPs per token per matmul weight (the embedding table is a
lookup, not a matmul, so it is left out) plus 12·layers·hidden·seq for attention scores; the recomputation
of gradient checkpointing is not counted (that would be hardware FLOPs utilisation).
"""
import argparse
import time

import torch
import torch.nn.functional as F

GEMMA2_2B = dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                 num_key_value_heads=4, head_dim=256, vocab_size=256000, max_position_embeddings=8192)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4, help="pairs per step (2× sequences)")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--attn", default="eager", help="eager or flash_attention_2 (never sdpa for Gemma-2)")
    parser.add_argument("--precision", choices=("mixed", "bf16"), default="mixed")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--small", action="store_true", help="2 layers, short sequences, on the CPU")
    args = parser.parse_args()

    from transformers import Gemma2Config, Gemma2ForSequenceClassification

    arch = dict(GEMMA2_2B)
    device = "cuda"
    if args.small:
        arch.update(num_hidden_layers=2, hidden_size=64, intermediate_size=128, head_dim=16, vocab_size=1000)
        args.seq_len, args.pairs, args.steps, args.warmup, device = 64, 2, 2, 1, "cpu"
    torch.manual_seed(0)
    config = Gemma2Config(**arch, num_labels=1, pad_token_id=0, attn_implementation=args.attn)
    weights = torch.float32 if args.precision == "mixed" else torch.bfloat16
    model = Gemma2ForSequenceClassification(config).to(device=device, dtype=weights)
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    n_params = sum(p.numel() for p in model.parameters())
    matmul_params = n_params - model.model.embed_tokens.weight.numel()
    ids = torch.randint(1, arch["vocab_size"], (2 * args.pairs, args.seq_len), device=device)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=args.precision == "mixed"):
            rewards = model(input_ids=ids).logits.squeeze(-1).float()
        loss = -F.logsigmoid(rewards[: args.pairs] - rewards[args.pairs:]).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    tokens = ids.numel() / seconds
    flops_per_token = 6 * matmul_params + 12 * arch["num_hidden_layers"] * arch["hidden_size"] * args.seq_len
    mfu = tokens * flops_per_token / (args.peak_tflops * 1e12)
    print(f"device {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}; {n_params / 1e9:.2f} B parameters; "
          f"{args.pairs} pairs × {args.seq_len} tokens per step; attention {args.attn}; precision {args.precision}")
    print(f"step {seconds * 1000:.0f} ms; {tokens:,.0f} tokens/s; MFU {100 * mfu:.1f}% of {args.peak_tflops:.0f} TFLOP/s"
          + (f"; peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device == "cuda" else ""))


if __name__ == "__main__":
    main()
