import math

import pytest

from music_rm.core.params import TrainConfig
from music_rm.data.sources import fetch
from music_rm.reward.chat import load_tokenizer
from music_rm.reward.model import load_reward_model, score, score_conversations
from music_rm.reward.train import tokenize_pairs, train_reward_model
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
    summary, curve = train_reward_model(str(tiny_model), pairs, config(), str(out),
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
    _, curve2 = train_reward_model(str(tiny_model), pairs, config(), str(tmp_path / "m"), str(tmp_path / "w"))
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
    from music_rm.reward.chat import token_ids
    from music_rm.reward.train import drop_oldest_exchange

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
    while (smaller := drop_oldest_exchange(c, r)) is not None:
        c, r = smaller
    assert c == [history[0]] + chosen[-4:] and r == [history[0]] + rejected[-4:]
    _, impossible = tokenize_pairs(tokenizer, [pair], 10, "truncate_oldest")
    assert impossible["pairs_dropped_too_long"] == 1


def test_length_grouped_batches_pad_less_than_random_ones(tiny_model, pairs, tmp_path):
    from music_rm.reward.train import build_trainer, padding_fraction

    fractions = {}
    for grouped in (True, False):
        trainer, _ = build_trainer(str(tiny_model), pairs * 3, config(group_by_length=grouped), str(tmp_path))
        fractions[grouped] = padding_fraction(trainer)
    assert 0 <= fractions[True] < fractions[False]


def test_summary_reports_padding_fraction(trained):
    _, summary, _ = trained
    assert 0 <= summary["padding_fraction"] < 1 and summary["pairs_truncated"] == 0


def test_lora_trains_the_score_head_and_merges_into_a_plain_folder_with_the_same_scores(tiny_model, pairs, tmp_path):
    import torch

    from music_rm.reward.train import build_trainer, save_plain

    trainer, _ = build_trainer(str(tiny_model), pairs, config(lora_r=4, lora_alpha=8, lora_dropout=0.0, epochs=2),
                               str(tmp_path / "work"))
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
