"""Padding and throughput of our train stage against plain TRL RewardTrainer defaults, in one run.

    python bench/train_padding.py [--pairs data/contrast/train_with_original.jsonl] [--model models/base] [--steps 6]
    python bench/train_padding.py --small   # seconds: a tiny random-init model on the embedded seed pairs, 2 steps

Same data, model, per-device batch, max_length, precision and number of steps. Ours: our own tokenization
(rows over max_length counted, not dropped silently) and length-grouped batches. TRL defaults: the
conversational dataset handed to RewardTrainer as its docs show, random batches. Each batch the collator
builds is counted: non-pad tokens, padded tokens. Prints both padding fractions, non-pad tokens/s and
their ratio. Needs the default pipeline's outputs (run `dvc repro` first), but for --small. Training
settings other than those above are params.yaml's train.config.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class CountingCollator:
    def __init__(self, collator):
        self.collator, self.tokens, self.padded = collator, 0, 0

    def __call__(self, examples):
        batch = self.collator(examples)
        self.tokens += int(batch["attention_mask"].sum())
        self.padded += batch["attention_mask"].numel()
        return batch


def run(trainer) -> dict:
    counter = CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tokens": counter.tokens, "padding": 1 - counter.tokens / counter.padded,
            "tokens_per_s": counter.tokens / seconds}


def main():
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, set_seed
    from trl import RewardConfig, RewardTrainer

    from fixtures.tiny_model import make_tiny_model
    from music_rm.core.params import load_params
    from music_rm.data.conversation import read_pairs
    from music_rm.data.sources import fetch
    from music_rm.data.chat_template import load_tokenizer
    from music_rm.reward.train import build_trainer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="data/contrast/train_with_original.jsonl")
    parser.add_argument("--model", default="models/base")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--small", action="store_true", help="A tiny random-init model, the embedded seed pairs, "
                                                              "2 steps of 4 pairs.")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    results = {}
    with tempfile.TemporaryDirectory() as work:
        if args.small:
            args.model = str(make_tiny_model(Path(work) / "tiny"))
            args.steps, args.batch_size = 2, 4
            pairs = fetch(params.fetch.model_copy(update={"source": "embedded"}))[0]
        else:
            pairs = read_pairs(args.pairs)
        cfg = params.train.config.model_copy(update=dict(
            max_length=args.max_length, epochs=1, batch_size=args.batch_size, grad_accum=1,
            global_batch_size=None, learning_rate=1e-5, bf16=True, gradient_checkpointing=False,
            max_steps=args.steps, group_by_length=True, save_steps=None, lora_r=None))
        trainer, _ = build_trainer(args.model, pairs, cfg, 0, work)
        results["ours (length-grouped)"] = run(trainer)  # counted on the batches trained on, as for TRL below

        set_seed(0)
        tokenizer = load_tokenizer(args.model)
        model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = tokenizer.pad_token_id
        trl_args = RewardConfig(output_dir=work, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
                                max_length=args.max_length, learning_rate=1e-5, bf16=True, report_to="none",
                                save_strategy="no", use_cpu=not torch.cuda.is_available(), seed=0)
        dataset = Dataset.from_list([{"chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs])
        results["TRL defaults"] = run(RewardTrainer(model=model, args=trl_args, train_dataset=dataset,
                                                    processing_class=tokenizer))
    for name, r in results.items():
        print(f"{name:24s} padding {100 * r['padding']:5.1f}%  non-pad tokens {r['tokens']:7d}  "
              f"{r['seconds']:6.1f} s  {r['tokens_per_s']:7.1f} non-pad tokens/s")
    ours, trl = results["ours (length-grouped)"], results["TRL defaults"]
    print(f"ratio (ours / TRL defaults, non-pad tokens/s): {ours['tokens_per_s'] / trl['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
