import math

import pytest

from music_rm.params import TrainConfig
from music_rm.reward import load_reward_model, load_tokenizer, score, tokenize_pairs, train_reward_model
from music_rm.sources import fetch
from tests.test_sources import params as fetch_params


def config(**overrides):
    base = dict(seed=0, max_length=256, epochs=1, batch_size=4, grad_accum=1, learning_rate=1e-3, bf16=False,
                gradient_checkpointing=False, logging_steps=1)
    return TrainConfig(**{**base, **overrides})


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
    rows, summary = tokenize_pairs(tokenizer, pairs, max_length=40)
    assert summary["pairs_dropped_too_long"] > 0
    assert summary["pairs_used"] + summary["pairs_dropped_too_long"] == len(pairs) == summary["pairs"]
    assert all(max(len(r["chosen_ids"]), len(r["rejected_ids"])) <= 40 for r in rows)


def test_a_few_training_steps_save_a_loadable_reward_model(trained, pairs):
    out, summary, curve = trained
    assert summary["steps"] == 3 and summary["pairs_used"] == len(pairs)
    assert [row["step"] for row in curve] == [1, 2, 3]
    assert all(math.isfinite(row["loss"]) for row in curve)
    model, tokenizer = load_reward_model(str(out))
    assert model.config.num_labels == 1


def test_training_changes_the_scores(tiny_model, trained, pairs):
    from transformers import AutoModelForSequenceClassification
    import torch

    out, _, _ = trained
    torch.manual_seed(0)
    conversations = [p["chosen"] for p in pairs[:4]]
    model, tokenizer = load_reward_model(str(out))
    initial = AutoModelForSequenceClassification.from_pretrained(str(tiny_model), num_labels=1).eval()
    initial.config.pad_token_id = tokenizer.pad_token_id
    assert score(model, tokenizer, conversations, 4) != score(initial, tokenizer, conversations, 4)


def test_scores_are_the_same_batched_and_one_by_one(trained, pairs):
    out, _, _ = trained
    model, tokenizer = load_reward_model(str(out))
    conversations = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    batched = score(model, tokenizer, conversations, batch_size=8)
    single = score(model, tokenizer, conversations, batch_size=1)
    assert batched == pytest.approx(single, abs=1e-5)


def test_same_seed_same_model(tiny_model, trained, pairs, tmp_path):
    out, summary, curve = trained
    _, curve2 = train_reward_model(str(tiny_model), pairs, config(), str(tmp_path / "m"), str(tmp_path / "w"))
    assert curve2 == curve
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()


def test_gemma2_refuses_sdpa_attention():
    from music_rm.params import ParamsError
    from music_rm.reward import check_attention

    check_attention("llama", None)
    check_attention("gemma2", "eager")
    with pytest.raises(ParamsError, match="gemma2 needs one of"):
        check_attention("gemma2", None)
    with pytest.raises(ParamsError, match="sdpa"):
        check_attention("gemma2", "sdpa")
