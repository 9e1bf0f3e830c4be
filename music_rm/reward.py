"""Bradley-Terry reward models: TRL's RewardTrainer on pre-tokenized pairs, and scoring.

We tokenize ourselves (the model's chat template) so that rows longer than `max_length` are handled
by a stated policy and counted; RewardTrainer would drop them without a word. `truncation: drop`
drops such a pair; `truncate_oldest` removes the oldest shared (user, assistant) exchanges first,
keeping a leading system message, the last shared user message and every contrasted turn (everything
after the part both conversations share), and drops the pair only when that is not enough. Batches
are grouped by length (`group_by_length`) so less of each batch is padding; the padding fraction of
the batches actually trained on is reported.
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


def shared_prefix_length(a: list[dict], b: list[dict]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def drop_oldest_exchange(chosen: list[dict], rejected: list[dict]) -> tuple[list, list] | None:
    """Both conversations without their oldest shared (user, assistant) exchange, keeping a leading system
    message, the last shared user message and everything after the shared part (the contrasted turns);
    None when no such exchange is left."""
    start = 1 if chosen[0]["role"] == "system" else 0
    if start + 2 > shared_prefix_length(chosen, rejected) - 1 or chosen[start]["role"] != "user":
        return None
    return chosen[:start] + chosen[start + 2:], rejected[:start] + rejected[start + 2:]


def tokenize_pairs(tokenizer, pairs: list[dict], max_length: int, truncation: str = "drop") -> tuple[list[dict], dict]:
    """Token ids per pair that fits max_length (after truncation under the policy); the rest counted."""
    rows, too_long, truncated, longest = [], 0, 0, 0
    for pair in pairs:
        chosen, rejected = pair["chosen"], pair["rejected"]
        ids = token_ids(tokenizer, chosen), token_ids(tokenizer, rejected)
        longest = max(longest, *map(len, ids))
        shortened = False
        while max(map(len, ids)) > max_length and truncation == "truncate_oldest":
            smaller = drop_oldest_exchange(chosen, rejected)
            if smaller is None:
                break
            chosen, rejected = smaller
            ids, shortened = (token_ids(tokenizer, chosen), token_ids(tokenizer, rejected)), True
        if max(map(len, ids)) > max_length:
            too_long += 1
            continue
        truncated += shortened
        rows.append({"chosen_ids": ids[0], "rejected_ids": ids[1], "length": max(map(len, ids))})
    return rows, {"pairs": len(pairs), "pairs_used": len(rows), "pairs_dropped_too_long": too_long,
                  "pairs_truncated": truncated, "truncation": truncation, "longest_tokens": longest,
                  "max_length": max_length}


def padding_fraction(trainer) -> float:
    """Share of padding in one epoch of training batches, as the trainer's sampler and collator form them."""
    tokens = slots = 0
    for batch in trainer.get_train_dataloader():
        tokens += int(batch["attention_mask"].sum())
        slots += batch["attention_mask"].numel()
    return round(1 - tokens / slots, 6)


def lora_config(cfg: TrainConfig):
    """peft's LoRA for a sequence-classification model; the score head is trained in full and saved."""
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                      lora_dropout=cfg.lora_dropout, target_modules=cfg.lora_target_modules, modules_to_save=["score"])


def build_trainer(base_dir: str, pairs: list[dict], cfg: TrainConfig, work_dir: str, callbacks=()):
    """(a RewardTrainer ready to train from `base_dir` on `pairs`, the data summary). `work_dir` receives
    checkpoints when `cfg.save_steps` is set."""
    from accelerate import PartialState
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForSequenceClassification, set_seed
    from trl import RewardConfig, RewardTrainer

    check_attention(AutoConfig.from_pretrained(base_dir).model_type, cfg.attn_implementation)

    tokenizer = load_tokenizer(base_dir)
    rows, data_summary = tokenize_pairs(tokenizer, pairs, cfg.max_length, cfg.truncation)
    if not rows:
        raise ParamsError(f"train.config.max_length: no training pairs left, all {len(pairs)} exceed "
                          f"{cfg.max_length} tokens (truncation: {cfg.truncation})")
    set_seed(cfg.seed)  # the score head is initialised at random when the model loads
    model = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=1, dtype=torch.float32,
                                                               attn_implementation=cfg.attn_implementation)
    model.config.pad_token_id = tokenizer.pad_token_id
    args = RewardConfig(
        output_dir=work_dir,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.accumulation(PartialState().num_processes),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        bf16=cfg.bf16,
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=cfg.gradient_checkpointing,
        max_length=cfg.max_length,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        length_column_name="length",
        remove_unused_columns=False,  # keeps "length" for the length-grouped sampler; the collator ignores it
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        save_total_limit=1,
        report_to="none",
        dataloader_num_workers=0,
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                            processing_class=tokenizer, callbacks=list(callbacks),
                            peft_config=lora_config(cfg) if cfg.lora_r else None)
    return trainer, data_summary


def save_plain(trainer, out_dir: str) -> None:
    """An AutoModelForSequenceClassification folder: LoRA adapters are merged into the weights first."""
    if not trainer.is_world_process_zero():
        return
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(out_dir)
    trainer.processing_class.save_pretrained(out_dir)


def train_reward_model(base_dir: str, pairs: list[dict], cfg: TrainConfig, out_dir: str, work_dir: str,
                       callbacks=()) -> tuple[dict, list[dict]]:
    """Train from `base_dir` on `pairs`, save an AutoModelForSequenceClassification folder to `out_dir`.
    With `cfg.save_steps`, checkpoints go to `work_dir`, and a run finds its last one there and resumes.

    Returns (data and training summary, curve rows per logged step)."""
    from transformers.trainer_utils import get_last_checkpoint

    trainer, data_summary = build_trainer(base_dir, pairs, cfg, work_dir, callbacks)
    padding = padding_fraction(trainer)
    last = get_last_checkpoint(work_dir) if cfg.save_steps and Path(work_dir).is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    if cfg.lora_r:
        trainer.accelerator.wait_for_everyone()
        save_plain(trainer, out_dir)
    else:
        trainer.save_model(out_dir)
        if trainer.is_world_process_zero():
            # A pickle of the trainer's arguments, temp paths included: two identical runs would differ.
            (Path(out_dir) / "training_args.bin").unlink(missing_ok=True)
    curve = [{"step": h["step"], **{k: h[k] for k in CURVE_KEYS if k in h}}
             for h in trainer.state.log_history if "loss" in h]
    summary = {**data_summary, "steps": trainer.state.global_step, "final_loss": curve[-1]["loss"] if curve else None,
               # the mean of the logged losses, not Trainer's training_loss, which after a resume averages
               # only the steps run since
               "mean_loss": sum(r["loss"] for r in curve) / len(curve) if curve else None,
               "world_size": trainer.args.world_size,
               "padding_fraction": padding}
    if last:  # not part of the stage's DVC metrics: a resumed run must write what an uninterrupted one writes
        summary["resumed_from"] = Path(last).name
    return summary, curve


def load_reward_model(model_dir: str):
    """For scoring: on the GPU in bfloat16 when there is one, else on the CPU in float32."""
    from transformers import AutoModelForSequenceClassification

    gpu = torch.cuda.is_available()
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.bfloat16 if gpu else torch.float32)
    return model.to("cuda" if gpu else "cpu").eval(), load_tokenizer(model_dir)


@torch.inference_mode()
def score(model, tokenizer, conversations: list[list[dict]], batch_size: int, desc: str = "score",
          max_length: int | None = None) -> list[float]:
    """One scalar reward per conversation, in input order. With `max_length`, a longer conversation keeps its
    last `max_length` tokens: the reward is read at the end, where the judged answer is."""
    ids = [token_ids(tokenizer, c) for c in conversations]
    if max_length:
        ids = [i[-max_length:] for i in ids]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    scores = [math.nan] * len(ids)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        idx = order[start:start + batch_size]
        enc = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(model.device)
        logits = model(**enc).logits.squeeze(-1).float()
        for i, value in zip(idx, logits.tolist()):
            scores[i] = value
    return scores
