"""What a paper-scale run needs, checked on the CPU: prompt sampling, the paper profile's arithmetic, chat
templates without a system role, prompts over the context, the attention a model was trained with, memory
between the generation engine and the reward models."""
import json
import re

import pytest
import yaml

from music_rm.core.params import Sampling, apply_profile, validate
from music_rm.data.conversation import fold_system
from music_rm.data.sources import fetch
from music_rm.generation.generator import TOO_LONG, Generator
from music_rm.generation.request import Request
from music_rm.generation.transformers_backend import TransformersBackend
from music_rm.method.simulate import TreeBuilder, sample_prompts
from music_rm.reward.model import load_reward_model, read_card
from music_rm.reward.train import train_reward_model
from tests.conftest import REPO, params_section
from tests.test_simulate import sim_params
from tests.test_sources import params as fetch_params

GREEDY = Sampling(max_new_tokens=4, temperature=0.0, top_p=1.0)
SYSTEM_ROW = {"id": "s", "source": "t", "chosen": [
    {"role": "system", "content": "You answer in French."}, {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Bleu."}], "rejected": [
    {"role": "system", "content": "You answer in French."}, {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Seven."}]}


def test_simulate_takes_a_seeded_random_sample_of_the_prompts_not_the_first_rows():
    rows, _, _ = fetch(fetch_params(test_fraction=0.1))
    first = {json.dumps(r["chosen"]) for r in rows[:10]}
    sample = sample_prompts(rows, 10, seed=0)
    assert len(sample) == 10 and sample == sample_prompts(rows, 10, seed=0)  # seeded
    assert {json.dumps(r["chosen"]) for r in sample} != first  # not file order
    assert sample != sample_prompts(rows, 10, seed=1)
    assert [rows.index(r) for r in sample] == sorted(rows.index(r) for r in sample)  # kept in file order
    assert len(sample_prompts(rows, 0.5, seed=0)) == round(0.5 * len(rows))
    assert sample_prompts(rows, None, seed=0) == rows and len(sample_prompts(rows, 10_000, seed=0)) == len(rows)


def test_the_paper_profile_comment_is_arithmetic_on_its_own_values():
    text = (REPO / "profiles" / "paper.yaml").read_text()
    paper = validate(apply_profile(yaml.safe_load((REPO / "params.yaml").read_text()), yaml.safe_load(text), "paper"),
                     "paper")
    number = lambda s: float(s.replace(",", ""))  # noqa: E731
    rows = number(re.search(r"has ([\d,]+) rows", text).group(1))
    train = rows * (1 - paper.fetch.test_fraction)
    music = paper.simulate.train_prompts
    seen = paper.train.config.max_steps * paper.train.config.global_batch_size
    assert f"test_fraction {paper.fetch.test_fraction}" in text and f"{rows:,.0f} × {1 - paper.fetch.test_fraction:.2f} = {train:,.0f}" in text
    assert f"simulate.train_prompts {music:,}" in text and f"at most {music:,} MUSIC" in text
    assert f"{train:,.0f} + {music:,} = {train + music:,.0f} train pairs" in text
    assert (f"{paper.train.config.max_steps:,} steps × {paper.train.config.global_batch_size} pairs = {seen:,} pairs = "
            f"{seen / (train + music):.2f} epochs") in text
    assert "61,203" not in text  # a Skywork run that never happened here


def test_a_template_without_a_system_role_gets_the_system_message_folded_everywhere(tiny_gemma2, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_gemma2)
    with pytest.raises(Exception, match="System role not supported"):  # Gemma-2's template, as on the Hub
        tokenizer.apply_chat_template(SYSTEM_ROW["chosen"], tokenize=False)
    generator = Generator(TransformersBackend(str(tiny_gemma2), "float32", 4))
    # simulate (and best_of_n, which builds its requests the same way): a seed row with its own system message
    builder = TreeBuilder(generator, sim_params(turns=1, max_retries=0))
    builder.build([(SYSTEM_ROW, "train")])
    request = builder.assistant_request(SYSTEM_ROW["chosen"][:2])
    text = tokenizer.decode(generator.backend._ids(request))
    assert "You answer in French.\n\nName a colour." in text and "<start_of_turn>system" not in text
    # judge: one user message, nothing to fold
    assert generator.generate([Request(({"role": "user", "content": "A or B?"},), GREEDY)], seed=0)[0] is not None
    # train and score
    cfg = params_section("train", config={"bf16": False, "batch_size": 2, "max_length": 256, "learning_rate": 1e-3,
                                          "attn_implementation": "eager"}).config
    train_reward_model(str(tiny_gemma2), [SYSTEM_ROW] * 4, cfg, 0, str(tmp_path / "rm"), str(tmp_path / "work"))
    with load_reward_model(str(tmp_path / "rm")) as rm:
        chosen, rejected = rm.score_pairs([SYSTEM_ROW])
        # folded, the same conversation: the same reward up to the kernels (scored alone, not padded in a pair:
        # 7e-9 apart in one run of this build)
        assert rm.score([fold_system(SYSTEM_ROW["chosen"])]) == pytest.approx(chosen, abs=1e-6)


def test_prompts_over_the_context_are_counted_drops_not_a_failed_batch(tiny_model):
    backend = TransformersBackend(str(tiny_model), "float32", 8)
    backend.context_tokens = 40  # as if the engine's max_model_len were 40
    generator = Generator(backend)
    short = Request(({"role": "user", "content": "Hi."},), GREEDY)
    long = Request(({"role": "user", "content": "word " * 60},), GREEDY)
    outputs = generator.generate([short, long, short], seed=0)
    assert outputs[1] is None and outputs[0] is not None and outputs[0] == outputs[2]
    assert generator.too_long == 1 and generator.model_calls == 2
    texts, reasons, retried, _ = generator.generate_checked([long], lambda i, t: (t, None), ("s",), retries=3)
    assert texts == [None] and reasons == [TOO_LONG] and not retried  # no retry: it would not fit either
    rows, _, _ = fetch(fetch_params())
    builder = TreeBuilder(generator, sim_params(turns=1))
    long_row = {**rows[0], "chosen": [{"role": "user", "content": "word " * 60}, rows[0]["chosen"][-1]]}
    builder.build([(long_row, "train")])
    assert builder.dropped == {TOO_LONG: 1}


def test_a_judge_prompt_over_the_context_is_its_own_verdict(tiny_model):
    from music_rm.evaluation.judge import agreement, judge_pairs, records

    backend = TransformersBackend(str(tiny_model), "float32", 8)
    backend.context_tokens = 600  # the judge template alone is a few hundred of the tiny tokenizer's tokens
    pair = lambda words: {"id": str(words), "chosen": [{"role": "user", "content": "q " * words},  # noqa: E731
                                                       {"role": "assistant", "content": "a"}],
                          "rejected": [{"role": "user", "content": "q " * words}, {"role": "assistant", "content": "b"}]}
    pairs = [pair(1), pair(400)]
    verdicts = judge_pairs(Generator(backend), pairs, GREEDY, seed=0)
    assert verdicts[1]["verdict"] == TOO_LONG and verdicts[0]["verdict"] != TOO_LONG
    result = agreement(verdicts, records(pairs, verdicts, {}, "s", 0), [], [], 10, 0)
    assert result[f"verdicts_{TOO_LONG}"] == 1


def test_a_model_is_scored_with_the_attention_it_was_trained_with(tiny_model, tiny_gemma2, tmp_path):
    rows, _, _ = fetch(fetch_params())
    for name, model in (("llama", tiny_model), ("gemma2", tiny_gemma2)):
        cfg = params_section("train", config={"bf16": False, "batch_size": 4, "max_length": 384, "learning_rate": 1e-3,
                                              "attn_implementation": "eager"}).config
        out = tmp_path / name
        train_reward_model(str(model), rows[:12], cfg, 0, str(out), str(tmp_path / f"{name}-work"))
        card = read_card(str(out))
        assert card["attn_implementation"] == "eager"
        with load_reward_model(str(out)) as rm:
            assert rm.model.config._attn_implementation == "eager"  # not transformers' default (sdpa for Llama)
            n = card["reward_stats"]["pairs"]
            chosen, rejected = rm.score_pairs(rows[:n])
        rewards = chosen + rejected
        mean = sum(rewards) / len(rewards)
        # train-time rewards (in memory, at the end of training) = score-time rewards (from the folder)
        assert mean == pytest.approx(card["reward_stats"]["mean"], abs=1e-5)
        assert sum(c > r for c, r in zip(chosen, rejected)) / n == pytest.approx(card["reward_stats"]["accuracy"], abs=1e-6)


def test_replicas_give_the_scores_of_one_model(tiny_reward_model):
    rows, _, _ = fetch(fetch_params())
    conversations = [r["chosen"] for r in rows[:10]] + [r["rejected"] for r in rows[:10]]
    with load_reward_model(str(tiny_reward_model)) as one, load_reward_model(str(tiny_reward_model), ["cpu", "cpu"]) as two:
        assert len(two.replicas) == 2
        assert two.score(conversations, batch_size=3) == one.score(conversations, batch_size=3)
    assert two.replicas == []  # closed: the memory is given back


def load_stage(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_judge_gives_its_engine_back_before_reward_models_load_one_at_a_time(tiny_reward_model, tmp_path,
                                                                                   monkeypatch):
    from click.testing import CliRunner

    from music_rm.core.io import write_jsonl
    from tests.conftest import models_folder, repo_params

    events = []
    stage = load_stage("judge")

    class Engine:  # a generation engine that holds devices until closed, as vLLM does
        identity = {"backend": "engine"}

        def plan(self, requests):
            return [[i] for i in range(len(requests))]

        def run_many(self, jobs):
            for j, (requests, _) in enumerate(jobs):
                events.append("generate")
                yield j, (["A"] * len(requests), 1)

        def close(self):
            events.append("engine closed")

    class Loaded:
        def __init__(self, path, **options):
            self.rm = load_reward_model(path, **options)
            events.append("rm loaded")

        def __enter__(self):
            return self.rm

        def __exit__(self, *exc):
            self.rm.close()
            events.append("rm freed")

    monkeypatch.setattr(stage, "make_backend", lambda *args: Engine())
    monkeypatch.setattr(stage, "load_reward_model", Loaded)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    rows, _, _ = fetch(fetch_params())
    write_jsonl(tmp_path / "pairs.jsonl", rows[:3])
    params = repo_params(judge={"pair_sets": {"s": str(tmp_path / "pairs.jsonl")}, "cache": False})
    params["train"]["variants"] = {"a": {"pairs": "x"}, "b": {"pairs": "x"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    models = models_folder(tmp_path, tiny_reward_model, ["a", "b"])
    result = CliRunner().invoke(stage.main, ["--set", "s", "--params", str(tmp_path / "params.yaml"), "--models",
                                             str(models), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert events == ["generate"] * 6 + ["engine closed", "rm loaded", "rm freed", "rm loaded", "rm freed"]


def test_the_model_loads_after_the_training_arguments_so_zero3_can_shard_it(tiny_model, tmp_path, monkeypatch):
    """Under `accelerate launch` with DeepSpeed ZeRO-3, building the training arguments registers the DeepSpeed
    config; transformers loads a model sharded (zero.Init, bf16) only when it is registered by then."""
    import transformers
    import transformers.integrations
    import trl

    from music_rm.reward.train import build_trainer, load_dtype

    order = []
    real_config, real_load = trl.RewardConfig, transformers.AutoModelForSequenceClassification.from_pretrained

    class RecordingConfig(real_config):
        def __post_init__(self):
            order.append("training arguments")
            super().__post_init__()

    def recording_load(*args, **kwargs):
        order.append(f"model loaded in {kwargs['dtype']}")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(trl, "RewardConfig", RecordingConfig)
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", recording_load)
    rows, _, _ = fetch(fetch_params())
    cfg = params_section("train", config={"bf16": False, "batch_size": 4, "max_length": 384}).config
    build_trainer(str(tiny_model), rows[:4], cfg, 0, str(tmp_path))
    assert order == ["training arguments", "model loaded in torch.float32"]
    monkeypatch.setattr(transformers.integrations, "is_deepspeed_zero3_enabled", lambda: True)
    import torch

    assert load_dtype(cfg.model_copy(update={"bf16": True})) == torch.bfloat16  # ZeRO-3 keeps the fp32 master copy
    assert load_dtype(cfg) == torch.float32
