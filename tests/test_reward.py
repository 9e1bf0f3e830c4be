import math

import pytest

from music_rm.core.params import TrainConfig
from music_rm.data.sources import fetch
from music_rm.data.chat_template import load_tokenizer, token_ids
from music_rm.data.lengths import drop_oldest_shared_exchange, tokenize_pairs
from music_rm.reward.model import load_reward_model, score, score_conversations
from music_rm.reward.train import train_reward_model
from tests.conftest import params_section
from tests.test_sources import params as fetch_params


def config(**overrides):
    base = dict(max_length=256, epochs=1, batch_size=4, learning_rate=1e-3, bf16=False, truncation="drop")
    return TrainConfig.model_validate({**params_section("train").config.model_dump(), **base, **overrides})


@pytest.fixture(scope="module")
def pairs():
    train, _, _ = fetch(fetch_params())
    return train[:12]


@pytest.fixture(scope="module")
def trained(tiny_model, pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "model"
    summary, curve = train_reward_model(str(tiny_model), pairs, config(), 0, str(out),
                                        str(tmp_path_factory.mktemp("work")))
    return out, summary, curve


def test_too_long_pairs_are_counted_not_silently_lost(tiny_model, pairs):
    tokenizer = load_tokenizer(str(tiny_model))
    rows, summary = tokenize_pairs(tokenizer, pairs, max_length=40, truncation="drop")
    assert summary["pairs_dropped_too_long"] > 0
    assert summary["pairs_used"] + summary["pairs_dropped_too_long"] == len(pairs) == summary["pairs"]
    assert all(max(len(r["chosen_ids"]), len(r["rejected_ids"])) <= 40 for r in rows)


def test_a_few_training_steps_save_a_loadable_reward_model(trained, pairs):
    out, summary, curve = trained
    assert summary["steps"] == 3 and summary["pairs_used"] == len(pairs)
    assert summary["pairs_seen"] == summary["distinct_pairs_seen"] == len(pairs) and summary["seed"] == 0
    assert [row["step"] for row in curve] == [1, 2, 3]
    assert all(math.isfinite(row["loss"]) for row in curve)
    assert load_reward_model(str(out)).model.config.num_labels == 1


def test_training_changes_the_scores(tiny_model, trained, pairs):
    from transformers import AutoModelForSequenceClassification
    import torch

    out, _, _ = trained
    torch.manual_seed(0)
    conversations = [p["chosen"] for p in pairs[:4]]
    rm = load_reward_model(str(out))
    initial = AutoModelForSequenceClassification.from_pretrained(str(tiny_model), num_labels=1).eval()
    initial.config.pad_token_id = rm.tokenizer.pad_token_id
    assert rm.score(conversations, 4) != score_conversations(initial, rm.tokenizer, conversations, 4, "score", None)
    assert score(str(out), conversations, 4) == rm.score(conversations, 4)  # the notebook function


def test_scores_are_the_same_batched_and_one_by_one(trained, pairs):
    out, _, _ = trained
    rm = load_reward_model(str(out))
    conversations = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    batched = rm.score(conversations, batch_size=8)
    single = rm.score(conversations, batch_size=1)
    assert batched == pytest.approx(single, abs=1e-5)


def test_same_seed_same_model(tiny_model, trained, pairs, tmp_path):
    out, summary, curve = trained
    _, curve2 = train_reward_model(str(tiny_model), pairs, config(), 0, str(tmp_path / "m"), str(tmp_path / "w"))
    assert curve2 == curve
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()


def test_gemma2_refuses_sdpa_attention():
    from music_rm.core.errors import ParamsError
    from music_rm.reward.train import check_attention

    check_attention("llama", None)
    check_attention("gemma2", "eager")
    with pytest.raises(ParamsError, match="gemma2 needs one of"):
        check_attention("gemma2", None)
    with pytest.raises(ParamsError, match="sdpa"):
        check_attention("gemma2", "sdpa")


def test_truncate_oldest_keeps_system_message_and_contrasted_turns(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    history = [{"role": "system", "content": "Be brief."}]
    for i in range(6):
        history += [{"role": "user", "content": f"old question {i} " * 8}, {"role": "assistant", "content": f"old answer {i} " * 8}]
    opening = history + [{"role": "user", "content": "Plan a trip to Rome."}]
    chosen = opening + [{"role": "assistant", "content": "Where from?"}, {"role": "user", "content": "Paris."},
                        {"role": "assistant", "content": "Take the night train."}]
    rejected = opening + [{"role": "assistant", "content": "Rome has many museums."}, {"role": "user", "content": "Paris."},
                          {"role": "assistant", "content": "The Louvre is in Paris."}]
    pair = {"chosen": chosen, "rejected": rejected}
    full = max(len(token_ids(tokenizer, chosen)), len(token_ids(tokenizer, rejected)))
    limit = full - 60
    dropped_rows, dropped = tokenize_pairs(tokenizer, [pair], limit, "drop")
    rows, summary = tokenize_pairs(tokenizer, [pair], limit, "truncate_oldest")
    assert dropped_rows == [] and dropped["pairs_dropped_too_long"] == 1
    assert summary["pairs_truncated"] == 1 and summary["pairs_dropped_too_long"] == 0
    assert max(len(rows[0]["chosen_ids"]), len(rows[0]["rejected_ids"])) <= limit
    text = tokenizer.decode(rows[0]["chosen_ids"])
    assert "Be brief." in text and "old question 0" not in text and "Plan a trip to Rome." in text
    assert text.rstrip().endswith(tokenizer.decode(token_ids(tokenizer, chosen[-3:]))[-40:].rstrip())
    # the opening user message and every contrasted turn survive however small max_length gets
    c, r = chosen, rejected
    while (smaller := drop_oldest_shared_exchange(c, r)) is not None:
        c, r = smaller
    assert c == [history[0]] + chosen[-4:] and r == [history[0]] + rejected[-4:]
    _, impossible = tokenize_pairs(tokenizer, [pair], 10, "truncate_oldest")
    assert impossible["pairs_dropped_too_long"] == 1


def test_length_grouped_batches_pad_less_than_random_ones(tiny_model, pairs, tmp_path):
    from music_rm.reward.train import build_trainer, padding_fraction

    fractions = {}
    for grouped in (True, False):
        trainer, _ = build_trainer(str(tiny_model), pairs * 3, config(group_by_length=grouped), 0, str(tmp_path))
        fractions[grouped] = padding_fraction(trainer)
    assert 0 <= fractions[True] < fractions[False]


def test_summary_reports_padding_fraction(trained):
    _, summary, _ = trained
    assert 0 <= summary["padding_fraction"] < 1 and summary["pairs_truncated"] == 0


def test_lora_trains_the_score_head_and_merges_into_a_plain_folder_with_the_same_scores(tiny_model, pairs, tmp_path):
    import torch

    from music_rm.reward.train import build_trainer, save_plain

    trainer, _ = build_trainer(str(tiny_model), pairs, config(lora_r=4, lora_alpha=8, lora_dropout=0.0, epochs=2),
                               0, str(tmp_path / "work"))
    head_before = trainer.model.base_model.model.score.modules_to_save["default"].weight.detach().clone()
    trainer.train()
    peft_model = trainer.model.eval()
    assert not torch.equal(head_before, peft_model.base_model.model.score.modules_to_save["default"].weight)
    conversations = [p["chosen"] for p in pairs[:4]] + [p["rejected"] for p in pairs[:4]]
    tokenizer = load_tokenizer(str(tiny_model))
    in_memory = score_conversations(peft_model, tokenizer, conversations, 4, "score", None)
    save_plain(trainer, str(tiny_model), config(lora_r=4, lora_alpha=8, lora_dropout=0.0), str(tmp_path / "merged"))
    assert not list((tmp_path / "merged").glob("adapter*"))
    rm = load_reward_model(str(tmp_path / "merged"))
    assert type(rm.model).__name__ == "LlamaForSequenceClassification"
    assert rm.score(conversations, batch_size=4) == pytest.approx(in_memory, abs=1e-4)


def test_global_batch_size_sets_accumulation_from_the_world_size():
    from music_rm.core.errors import ParamsError

    assert config(global_batch_size=64, batch_size=2).accumulation(8) == 4
    assert config(global_batch_size=64, batch_size=2).accumulation(1) == 32
    assert config(grad_accum=3).accumulation(8) == 3
    with pytest.raises(ParamsError, match="not a multiple"):
        config(global_batch_size=64, batch_size=3).accumulation(2)


def test_gradient_checkpointing_reaches_the_model_under_either_transformers_version(tiny_model, pairs, tmp_path):
    """train.config.gradient_checkpointing is `activation_checkpointing` in transformers 5.24 and
    `gradient_checkpointing` in 5.20.2 (the GPU lock's); `make test-gpu-lock` runs this under 5.20.2."""
    from music_rm.reward.train import build_trainer

    for on in (True, False):
        trainer, _ = build_trainer(str(tiny_model), pairs[:4], config(gradient_checkpointing=on, max_steps=1),
                                   0, str(tmp_path / str(on)))
        trainer.train()
        flag = ("is_activation_checkpointing" if hasattr(trainer.model, "is_activation_checkpointing")
                else "is_gradient_checkpointing")  # 5.24's name; 5.20.2 has only the old one
        assert getattr(trainer.model, flag) is on


def long_conversation(exchanges: int = 6) -> list[dict]:
    messages = [{"role": "system", "content": "Be brief."}]
    for i in range(exchanges):
        messages += [{"role": "user", "content": f"old question {i} " * 8},
                     {"role": "assistant", "content": f"old answer {i} " * 8}]
    return messages + [{"role": "user", "content": "Plan a trip to Rome."},
                       {"role": "assistant", "content": "Take the night train from Paris."}]


def test_scoring_truncates_whole_oldest_exchanges_as_training_does(tiny_reward_model):
    """A scored conversation over max_length loses its oldest whole exchanges and keeps its system message and
    template start, the way a training pair does: the same rule (data/lengths.py), not its last tokens."""
    from music_rm.data.lengths import conversation_ids

    conversation = long_conversation()
    with load_reward_model(str(tiny_reward_model)) as rm:
        full = token_ids(rm.tokenizer, conversation)
        limit = len(full) - 40
        ids, shortened = conversation_ids(rm.tokenizer, conversation, limit)
        dropped = next(n for n in range(1, 7) if len(token_ids(rm.tokenizer, conversation[:1] + conversation[1 + 2 * n:]))
                       <= limit)
        kept = conversation[:1] + conversation[1 + 2 * dropped:]
        assert shortened and len(ids) <= limit < len(full)
        assert ids == token_ids(rm.tokenizer, kept) and ids[:3] == full[:3]
        assert rm.score([conversation], max_length=limit) == rm.score([kept])
        assert rm.score([conversation], max_length=limit) != [rm.model(torch_tensor([full[-limit:]])).logits.item()]
        assert conversation_ids(rm.tokenizer, conversation, len(full)) == (full, False)


def test_a_scored_conversation_whose_last_exchange_is_over_the_limit_keeps_the_template_start(tiny_gemma2):
    """Gemma-2's template (BOS, no system role: the system message folded into the first user turn)."""
    from music_rm.data.lengths import conversation_ids, template_start

    tokenizer = load_tokenizer(str(tiny_gemma2))
    conversation = long_conversation(1)
    full = token_ids(tokenizer, conversation)
    head = template_start(tokenizer, conversation)
    assert full[0] == tokenizer.bos_token_id and "Be brief." in tokenizer.decode(full[:head])
    ids, shortened = conversation_ids(tokenizer, conversation, 2 * head + 5)
    assert shortened and len(ids) == 2 * head + 5
    assert ids[:head] == full[:head] and ids[head:] == full[-(head + 5):]


def torch_tensor(rows):
    import torch

    return torch.tensor(rows)


def test_resume_skips_a_checkpoint_saved_in_part(tiny_model, pairs, tmp_path, caplog):
    """A checkpoint is resumed from only once every process has saved it (its completion marker); one killed
    during its save is skipped with one line, and training starts over instead of loading half a checkpoint."""
    from music_rm.reward.train import CHECKPOINT_COMPLETE

    cfg = config(save_steps=2, max_steps=4)
    work = tmp_path / "complete"
    first, _ = train_reward_model(str(tiny_model), pairs, cfg, 0, str(tmp_path / "a"), str(work))
    [checkpoint] = work.glob("checkpoint-*")
    assert checkpoint.name == "checkpoint-4" and (checkpoint / CHECKPOINT_COMPLETE).is_file()
    assert "resumed_from" not in first
    resumed, _ = train_reward_model(str(tiny_model), pairs, cfg, 0, str(tmp_path / "b"), str(work))
    assert resumed["resumed_from"] == "checkpoint-4"

    work = tmp_path / "partial"
    train_reward_model(str(tiny_model), pairs, cfg, 0, str(tmp_path / "c"), str(work))
    [checkpoint] = work.glob("checkpoint-*")
    (checkpoint / CHECKPOINT_COMPLETE).unlink()  # as a kill during the save leaves it
    again, _ = train_reward_model(str(tiny_model), pairs, cfg, 0, str(tmp_path / "d"), str(work))
    assert "resumed_from" not in again and again["steps"] == 4 and again["pairs_seen"] == 16 and (checkpoint / CHECKPOINT_COMPLETE).is_file()
    assert [r.getMessage() for r in caplog.records if "saved in part" in r.getMessage()] == [
        f"{checkpoint}: removed, not resumed from: saved in part (no {CHECKPOINT_COMPLETE}; the run was killed during "
        "its save)"]
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "d" / "model.safetensors").read_bytes()


def test_pairs_seen_counts_what_the_training_steps_received(tiny_model, pairs, tmp_path):
    """12 pairs, 4 a step: 2 steps see 8 pairs (not the batch accelerate fetches ahead), 2 epochs see each pair
    twice, and a run resumed from a checkpoint counts the pairs seen before it too."""
    two_steps, _ = train_reward_model(str(tiny_model), pairs, config(max_steps=2, save_steps=2), 0,
                                      str(tmp_path / "a"), str(tmp_path / "work"))
    assert (two_steps["pairs_seen"], two_steps["distinct_pairs_seen"]) == (8, 8)
    resumed, _ = train_reward_model(str(tiny_model), pairs, config(max_steps=4, save_steps=2), 0,
                                    str(tmp_path / "b"), str(tmp_path / "work"))
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["steps"] == 4
    assert (resumed["pairs_seen"], resumed["distinct_pairs_seen"]) == (16, 12)
    two_epochs, _ = train_reward_model(str(tiny_model), pairs, config(epochs=2), 1, str(tmp_path / "c"),
                                       str(tmp_path / "w2"))
    assert (two_epochs["pairs_seen"], two_epochs["distinct_pairs_seen"], two_epochs["steps"]) == (24, 12, 6)
