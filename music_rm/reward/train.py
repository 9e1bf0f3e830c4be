"""Bradley-Terry reward models: TRL's RewardTrainer on pre-tokenized pairs.

We tokenize ourselves (the model's chat template) so that rows longer than `max_length` are handled
by a stated policy and counted; RewardTrainer would drop them without a word. `truncation: drop`
drops such a pair; `truncate_oldest` removes the oldest shared (user, assistant) exchanges first,
keeping a leading system message, the last shared user message and every contrasted turn (everything
after the part both conversations share), and drops the pair only when that is not enough: the length
rule of data/lengths.py, which scoring and the contrast stage's counts share. Batches
are grouped by length (`group_by_length`) so less of each batch is padding; the padding fraction of
the batches actually trained on is reported. The pairs the trainer trains on are counted as its
training steps receive them (`pairs_seen`, and `distinct_pairs_seen` of the `pairs_used`), not
computed from the file and the step count; a resumed run carries the count over in its checkpoint.
"""
import contextlib
import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from ..core.disk import disk_space, folder_size, size
from ..core.errors import ParamsError
from ..core.io import file_digest
from ..core.params import TrainConfig
from ..data.chat_template import load_tokenizer
from ..data.lengths import tokenize_pairs
from .curve import curve_rows
from .model import CARD_FILE, score_ids

# Gemma-2's attention logit soft-capping is lost under sdpa, which degrades it silently.
SOFTCAP_ATTENTION = {"gemma2": ("eager", "flash_attention_2")}


def check_attention(model_type: str, attn_implementation: str | None) -> None:
    allowed = SOFTCAP_ATTENTION.get(model_type)
    if allowed and attn_implementation not in allowed:
        raise ParamsError(f"train.config.attn_implementation: {model_type} needs one of {list(allowed)}, "
                          f"got {attn_implementation!r} (sdpa, the default, drops its attention soft-capping)")


log = logging.getLogger(__name__)
REWARD_STATS_PAIRS = 256  # training pairs whose rewards are summarised at the end of training
# Written into a checkpoint folder once every process has saved its part: a folder without it was being saved
# when the run was killed, and resuming from it would load half a checkpoint.
CHECKPOINT_COMPLETE = "checkpoint_complete"
PAIRS_SEEN_FILE = "pairs_seen.json"  # in each checkpoint: how often each training row was trained on so far


class PairsSeen:
    """How often each training row reaches a training step: the collator adds each example's row number to its
    batch, and the trainer's `training_step`, wrapped, takes it out (the model must not see it) and counts it.
    Batches collated but never trained on (accelerate fetches one batch ahead) are not counted."""

    def __init__(self, trainer, rows: int):
        self.counts = np.zeros(rows, dtype=np.int64)
        collate, step = trainer.data_collator, trainer.training_step

        def collate_with_rows(examples):
            batch = collate(examples)
            batch["row"] = torch.tensor([e["row"] for e in examples])
            return batch

        def counted_step(model, inputs, *args, **kwargs):
            np.add.at(self.counts, inputs.pop("row").cpu().numpy(), 1)
            return step(model, inputs, *args, **kwargs)

        trainer.data_collator, trainer.training_step = collate_with_rows, counted_step

    def total(self) -> np.ndarray:
        """The counts summed over every process (a collective call: every process makes it)."""
        from accelerate.utils import gather_object

        return np.sum(gather_object([self.counts]), axis=0)

    def load(self, checkpoint: str) -> None:
        """Continue from a checkpoint's counts (kept by the main process only, so the sum over processes holds
        them once)."""
        from accelerate import PartialState

        path = Path(checkpoint) / PAIRS_SEEN_FILE
        if PartialState().is_main_process and path.is_file():
            self.counts += np.asarray(json.loads(path.read_text(encoding="utf-8")), dtype=np.int64)

    def summary(self) -> dict:
        total = self.total()
        return {"pairs_seen": int(total.sum()), "distinct_pairs_seen": int((total > 0).sum())}


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


def load_dtype(cfg: TrainConfig):
    """bf16 weights under DeepSpeed ZeRO-3 with bf16 on (DeepSpeed keeps the fp32 master copy, sharded);
    otherwise fp32 weights, with bf16 autocast when `cfg.bf16` (mixed precision)."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    return torch.bfloat16 if cfg.bf16 and is_deepspeed_zero3_enabled() else torch.float32


def checkpointing_argument(config_class) -> str:
    """The training argument that turns on activation (gradient) checkpointing: `activation_checkpointing` in
    transformers 5.24 (`gradient_checkpointing` its deprecated alias), `gradient_checkpointing` in 5.20.2, the
    version vLLM 0.33 resolves to on GPU nodes (requirements/gpu.lock), which lacks the new name."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def checkpoint_marker(seen: PairsSeen | None = None):
    """A callback that writes CHECKPOINT_COMPLETE into each checkpoint after every process has saved it, and with
    `seen` the pairs counted so far (PAIRS_SEEN_FILE) before it."""
    from accelerate import PartialState
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class MarkComplete(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            counts = seen.total() if seen is not None else None
            PartialState().wait_for_everyone()
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
                if counts is not None:
                    (folder / PAIRS_SEEN_FILE).write_text(json.dumps(counts.tolist()), encoding="utf-8")
                (folder / CHECKPOINT_COMPLETE).write_text(f"{state.global_step}\n", encoding="utf-8")

    return MarkComplete()


def last_complete_checkpoint(work_dir: str) -> str | None:
    """The newest checkpoint folder in `work_dir` that was saved whole; newer ones without the completion marker
    (a kill during a save) are removed with one line. Called by the main process only (`resume_checkpoint`)."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    folders = sorted((p for p in Path(work_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir()
                      and p.name.split("-")[-1].isdigit()), key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for folder in folders:
        if (folder / CHECKPOINT_COMPLETE).is_file():
            return str(folder)
        # removed, or the trainer's checkpoint rotation would keep it over the new ones
        log.warning("%s: removed, not resumed from: saved in part (no %s; the run was killed during its save)",
                    folder, CHECKPOINT_COMPLETE)
        shutil.rmtree(folder)
    return None


def resume_checkpoint(work_dir: str, cfg: TrainConfig) -> str | None:
    """The checkpoint every process resumes from: the main process chooses and tells the others (each choosing
    for itself, processes that see different checkpoints would wait for each other at different points)."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    chosen = last_complete_checkpoint(work_dir) if (cfg.save_steps and PartialState().is_main_process
                                                    and Path(work_dir).is_dir()) else None
    return broadcast_object_list([chosen])[0]


def checkpoint_advice(work_dir: str) -> str:
    """What to do when a checkpoint did not fit on the disk of `work_dir`, and what a rerun resumes from."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    complete = sorted((p for p in Path(work_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*")
                       if (p / CHECKPOINT_COMPLETE).is_file()), key=lambda p: int(p.name.split("-")[-1]))
    resumes = (f"it resumes from {complete[-1].name} (a checkpoint takes {size(folder_size(complete[-1]))})"
               if complete else "it starts over: no checkpoint was saved whole")
    return f"free space there or move the cache (MUSIC_CACHE_DIR), and rerun: {resumes}"


def build_trainer(base_dir: str, pairs: list[dict], cfg: TrainConfig, seed: int, work_dir: str, callbacks=()):
    """(a RewardTrainer ready to train from `base_dir` on `pairs` with the training seed `seed`, the data
    summary). `work_dir` receives checkpoints when `cfg.save_steps` is set."""
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
    # The training arguments come first: under `accelerate launch` with DeepSpeed ZeRO-3 they register the
    # DeepSpeed config, so the model below loads sharded across processes (zero.Init), not whole in each.
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
        **{checkpointing_argument(RewardConfig): cfg.gradient_checkpointing},
        max_length=cfg.max_length,
        seed=seed,
        data_seed=seed,
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
    log.info("%d of %d pairs fit %d tokens (%d truncated); loading %s", data_summary["pairs_used"], len(pairs),
             cfg.max_length, data_summary["pairs_truncated"], base_dir)
    set_seed(seed)  # the score head is initialised at random when the model loads
    model = AutoModelForSequenceClassification.from_pretrained(
        base_dir, num_labels=1, dtype=load_dtype(cfg), attn_implementation=cfg.attn_implementation)
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = RewardTrainer(model=model, args=args,
                            train_dataset=Dataset.from_list([{**r, "row": i} for i, r in enumerate(rows)]),
                            processing_class=tokenizer, callbacks=list(callbacks),
                            peft_config=lora_config(cfg) if cfg.lora_r else None)
    return trainer, data_summary


@contextlib.contextmanager
def whole_model_loading():
    """from_pretrained without DeepSpeed ZeRO-3's sharded initialisation, which transformers applies whenever a
    ZeRO-3 config is registered (a global weak reference)."""
    from transformers.integrations import deepspeed as hf_deepspeed

    ref = hf_deepspeed._hf_deepspeed_config_weak_ref
    registered = ref() if ref is not None else None
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if registered is not None:
            hf_deepspeed.set_hf_deepspeed_config(registered)


def save_plain(trainer, base_dir: str, cfg: TrainConfig, out_dir: str) -> None:
    """LoRA adapters merged into a plain AutoModelForSequenceClassification folder. Every process takes part in
    gathering the full weights (ZeRO-3 and FSDP hold them partitioned); the main process loads them into a
    fresh copy of the base model with the same adapters, merges and saves."""
    from peft import get_peft_model
    from transformers import AutoModelForSequenceClassification

    state = trainer.accelerator.get_state_dict(trainer.deepspeed if trainer.is_deepspeed_enabled else trainer.model)
    if not trainer.is_world_process_zero():
        return
    with whole_model_loading():
        base = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=1, dtype=torch.float32,
                                                                  attn_implementation=cfg.attn_implementation)
    base.config.pad_token_id = trainer.processing_class.pad_token_id
    model = get_peft_model(base, lora_config(cfg))
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    model.merge_and_unload().save_pretrained(out_dir)
    trainer.processing_class.save_pretrained(out_dir)


def train_reward_model(base_dir: str, pairs: list[dict], cfg: TrainConfig, seed: int, out_dir: str, work_dir: str,
                       callbacks=()) -> tuple[dict, list[dict]]:
    """Train from `base_dir` on `pairs` with the training seed `seed` (initialisation, shuffling, dropout), save an
    AutoModelForSequenceClassification folder to `out_dir`.
    With `cfg.save_steps`, checkpoints go to `work_dir`, and a run finds its last one there and resumes.

    Returns (data and training summary, curve rows per logged step)."""
    trainer, data_summary = build_trainer(base_dir, pairs, cfg, seed, work_dir, callbacks)
    padding = padding_fraction(trainer)
    seen = PairsSeen(trainer, len(trainer.train_dataset))  # after padding_fraction's pass, which trains nothing
    trainer.add_callback(checkpoint_marker(seen))
    last = resume_checkpoint(work_dir, cfg)
    if last:
        seen.load(last)
    with disk_space(work_dir, lambda: checkpoint_advice(work_dir), kind="file") if cfg.save_steps \
            else contextlib.nullcontext():
        trainer.train(resume_from_checkpoint=last)
    seen_summary = seen.summary()
    stats = reward_stats(trainer, cfg)
    if cfg.lora_r:
        trainer.accelerator.wait_for_everyone()
        save_plain(trainer, base_dir, cfg, out_dir)
    else:
        trainer.save_model(out_dir)
        if trainer.is_world_process_zero():
            # A pickle of the trainer's arguments, temp paths included: two identical runs would differ.
            (Path(out_dir) / "training_args.bin").unlink(missing_ok=True)
    if trainer.is_world_process_zero():
        weights = hashlib.sha256("".join(file_digest(p) for p in sorted(Path(out_dir).glob("*.safetensors"))).encode())
        card = {"attn_implementation": trainer.model.config._attn_implementation, "max_length": cfg.max_length,
                "truncation": cfg.truncation, "reward_stats": stats, "weights_sha256": weights.hexdigest()}
        (Path(out_dir) / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    curve = curve_rows(trainer.state.log_history)
    summary = {**data_summary, "steps": trainer.state.global_step, "final_loss": curve[-1]["loss"] if curve else None,
               # the mean of the logged losses, not Trainer's training_loss, which after a resume averages
               # only the steps run since
               "mean_loss": sum(r["loss"] for r in curve) / len(curve) if curve else None,
               "world_size": trainer.args.world_size,
               "padding_fraction": padding, "seed": seed, **seen_summary}
    if last:  # not part of the stage's DVC metrics: a resumed run must write what an uninterrupted one writes
        summary["resumed_from"] = Path(last).name
    return summary, curve


def reward_stats(trainer, cfg: TrainConfig) -> dict:
    """Mean and standard deviation of the trained model's rewards on the first training pairs (chosen and
    rejected), and its accuracy on them, computed in memory as trained: what `score` must give again from
    the saved folder, and what PPO/GRPO users normalise rewards with. Every process takes part (ZeRO-3 and
    FSDP gather weights collectively)."""
    rows = trainer.train_dataset.select(range(min(REWARD_STATS_PAIRS, len(trainer.train_dataset))))
    model = trainer.model.eval()
    pad_id = trainer.processing_class.pad_token_id
    rewards = score_ids(model, pad_id, list(rows["chosen_ids"]) + list(rows["rejected_ids"]), cfg.batch_size)
    n = len(rows)
    values = torch.tensor(rewards, dtype=torch.float64)
    return {"pairs": n, "mean": round(float(values.mean()), 6), "std": round(float(values.std(unbiased=False)), 6),
            "accuracy": round(sum(c > r for c, r in zip(rewards[:n], rewards[n:])) / n, 6)}
