"""Bradley-Terry reward models: TRL's RewardTrainer on pre-tokenized pairs, and scoring.

We tokenize ourselves (the model's chat template, no truncation) so that rows longer than
`max_length` are counted and reported here; RewardTrainer would drop them without a word.
"""
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .params import ParamsError, TrainConfig

# Gemma-2's attention logit soft-capping is lost under sdpa, which degrades it silently.
SOFTCAP_ATTENTION = {"gemma2": ("eager", "flash_attention_2")}


def check_attention(model_type: str, attn_implementation: str | None) -> None:
    allowed = SOFTCAP_ATTENTION.get(model_type)
    if allowed and attn_implementation not in allowed:
        raise ParamsError(f"train.config.attn_implementation: {model_type} needs one of {list(allowed)}, "
                          f"got {attn_implementation!r} (sdpa, the default, drops its attention soft-capping)")

CURVE_KEYS = ("loss", "accuracy", "margin", "learning_rate", "grad_norm")


def token_ids(tokenizer, messages: list[dict]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return tokenizer(text, add_special_tokens=False).input_ids


def load_tokenizer(model_dir: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def tokenize_pairs(tokenizer, pairs: list[dict], max_length: int) -> tuple[list[dict], dict]:
    """Token ids per pair, without the pairs that exceed max_length (counted, not silently lost)."""
    rows, too_long, longest = [], 0, 0
    for pair in pairs:
        chosen, rejected = token_ids(tokenizer, pair["chosen"]), token_ids(tokenizer, pair["rejected"])
        longest = max(longest, len(chosen), len(rejected))
        if max(len(chosen), len(rejected)) > max_length:
            too_long += 1
            continue
        rows.append({"chosen_ids": chosen, "rejected_ids": rejected})
    return rows, {"pairs": len(pairs), "pairs_used": len(rows), "pairs_dropped_too_long": too_long,
                  "longest_tokens": longest, "max_length": max_length}


def train_reward_model(base_dir: str, pairs: list[dict], cfg: TrainConfig, out_dir: str, work_dir: str,
                       callbacks=()) -> tuple[dict, list[dict]]:
    """Train from `base_dir` on `pairs`, save an AutoModelForSequenceClassification folder to `out_dir`.

    Returns (data and training summary, curve rows per logged step)."""
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForSequenceClassification, set_seed
    from trl import RewardConfig, RewardTrainer

    check_attention(AutoConfig.from_pretrained(base_dir).model_type, cfg.attn_implementation)

    tokenizer = load_tokenizer(base_dir)
    rows, data_summary = tokenize_pairs(tokenizer, pairs, cfg.max_length)
    if not rows:
        raise ValueError(f"no training pairs left: all {len(pairs)} exceed max_length={cfg.max_length}")
    set_seed(cfg.seed)  # the score head is initialised at random when the model loads
    model = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=1, dtype=torch.float32,
                                                               attn_implementation=cfg.attn_implementation)
    model.config.pad_token_id = tokenizer.pad_token_id
    args = RewardConfig(
        output_dir=work_dir,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        bf16=cfg.bf16,
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=cfg.gradient_checkpointing,
        max_length=cfg.max_length,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                            processing_class=tokenizer, callbacks=list(callbacks))
    result = trainer.train()
    trainer.save_model(out_dir)
    if trainer.is_world_process_zero():
        # A pickle of the trainer's arguments, temp paths included: it would make two identical runs differ.
        (Path(out_dir) / "training_args.bin").unlink(missing_ok=True)
    curve = [{"step": h["step"], **{k: h[k] for k in CURVE_KEYS if k in h}}
             for h in trainer.state.log_history if "loss" in h]
    summary = {**data_summary, "steps": trainer.state.global_step, "final_loss": curve[-1]["loss"] if curve else None,
               "train_loss": result.training_loss, "world_size": trainer.args.world_size}
    return summary, curve


def load_reward_model(model_dir: str):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, load_tokenizer(model_dir)


@torch.inference_mode()
def score(model, tokenizer, conversations: list[list[dict]], batch_size: int, desc: str = "score") -> list[float]:
    """One scalar reward per conversation, in input order."""
    ids = [token_ids(tokenizer, c) for c in conversations]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    scores = [math.nan] * len(ids)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        idx = order[start:start + batch_size]
        enc = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
        logits = model(**enc).logits.squeeze(-1).float()
        for i, value in zip(idx, logits.tolist()):
            scores[i] = value
    return scores
