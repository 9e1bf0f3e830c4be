import pytest

from music_rm.generation.generator import Generator
from music_rm.generation.request import Request
from music_rm.generation.transformers_backend import TransformersBackend
from music_rm.core.params import Sampling
from music_rm.method.simulate import TreeBuilder, check_rewrite, check_user, clean_line, message_stats, with_instructions
from music_rm.data.sources import fetch
from tests.conftest import params_section
from tests.test_sources import params as fetch_params


def sim_params(**overrides):
    s = {"max_new_tokens": 8, "temperature": 1.0, "top_p": 1.0}
    base = dict(turns=3, seed=0, batch_size=4, dtype="float32", max_retries=5, context_messages=2,
                context_chars=200, assistant=s, user=s, rewriter=s)
    overrides = {k: v.model_dump() if isinstance(v, Sampling) else v for k, v in overrides.items()}
    return params_section("simulate", **{**base, **overrides})


class Recording(Generator):
    """The real tiny model, with every request and its completion kept for inspection."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log: list[tuple[Request, str]] = []

    def generate_with_cuts(self, requests, seed, desc="generate"):
        outputs, cut = super().generate_with_cuts(requests, seed, desc)
        self.log += list(zip(requests, outputs))
        return outputs, cut


@pytest.fixture(scope="module")
def seeds():
    train, test, _ = fetch(fetch_params())
    multi = [r for r in train if len(r["chosen"]) > 2][:2]
    return [(r, "train") for r in train[:2] + multi] + [(test[0], "test")]


@pytest.fixture(scope="module")
def built(tiny_model, seeds):
    generator = Recording(TransformersBackend(str(tiny_model), "float32", batch_size=4))
    builder = TreeBuilder(generator, sim_params())
    return builder, builder.build(seeds), generator.log


def test_branches_alternate_and_have_the_requested_turns(built, seeds):
    builder, trees, _ = built
    assert len(trees) + sum(builder.dropped.values()) == len(seeds)
    assert trees, f"every tree dropped: {builder.dropped}"
    for t in trees:
        n = len(t["context"])
        for branch in ("chosen", "rejected"):
            roles = [m["role"] for m in t[branch][n:]]
            assert roles == ["user", "assistant"] * 3
            assert t[branch][:n] == t["context"]
        assert t["chosen"][n] == t["rejected"][n]  # the real user message opens both branches
        assert [h["turn"] for h in t["hidden"]] == [1, 2, 3]


def test_hidden_instructions_appear_only_where_the_rejected_assistant_answers(built):
    builder, trees, log = built
    chat = [r for r, _ in log if not isinstance(r.prompt, str)]
    for t in trees:
        n = len(t["context"])
        visible_rejected_users = [m["content"] for m in t["rejected"][n:] if m["role"] == "user"]
        assert visible_rejected_users == [h["original"] for h in t["hidden"]]
        for turn, h in enumerate(t["hidden"]):
            assert h["rewritten"] != h["original"]
            # The rejected answer at this turn was generated for the hidden instruction, after the rejected history.
            answered = t["rejected"][: n + 2 * turn] + [{"role": "user", "content": h["rewritten"]}]
            assert any(r.prompt == with_instructions(answered, builder.assistant_instructions) for r in chat)
            assert h["rewritten"] not in [m["content"] for m in t["chosen"] + t["rejected"]]


def test_each_branch_user_simulator_reads_its_own_history(built):
    builder, trees, log = built
    user_prompts = [r.prompt for r, _ in log if r.raw and r.prefix == builder.user_template[0]]
    for t in trees:
        n = len(t["context"])
        for branch in ("chosen", "rejected"):
            for turn in (1, 2):  # user turns 2 and 3 were simulated from this branch's last answer
                last_answer = " ".join(t[branch][n + 2 * turn - 1]["content"].split())[-200:]
                assert any(last_answer in p for p in user_prompts), (branch, turn)


def test_same_seed_same_trees(tiny_model, seeds, built):
    _, trees, _ = built
    again = TreeBuilder(Generator(TransformersBackend(str(tiny_model), "float32", 4)), sim_params()).build(seeds)
    assert again == trees


def test_checks_and_cleaning(built):
    builder = built[0]
    capital = ("What is the capital of France?", builder.rewrite_examples)
    assert check_rewrite("What is the capital of France", capital) == "rewrite_same_as_original"
    assert check_rewrite("", capital) == "rewrite_empty"
    assert check_rewrite("What is the largest city in France?", capital) is None
    assert check_rewrite("What is the largest city in Canada?", capital) == "rewrite_copied_example"
    assert check_user("Assistant: Sure, here it is.", builder.user_examples) == "user_role_break"
    assert check_user("Is there something shorter?", builder.user_examples) == "user_copied_example"
    assert clean_line("User: How long?") == "How long?"
    assert clean_line("-   How long should I heat a kettle?") == "How long should I heat a kettle?"


def test_a_rewriter_that_only_repeats_drops_the_tree_with_its_reason(tiny_model, seeds):
    class Parrot(Generator):
        def generate_with_cuts(self, requests, seed, desc="generate"):
            outputs, cut = super().generate_with_cuts(requests, seed, desc)
            return [r.prompt.split("\n")[0] if r.raw and "Different instruction:" in r.prompt else o
                    for r, o in zip(requests, outputs)], cut

    builder = TreeBuilder(Parrot(TransformersBackend(str(tiny_model), "float32", 4)), sim_params(max_retries=1))
    assert builder.build(seeds[:2]) == []
    assert builder.dropped == {"rewrite_same_as_original": 2}
    assert builder.retries["rewrite_same_as_original"] == 2


def test_assistant_instructions_come_from_the_template_as_system_message(built):
    builder, _, log = built
    instructions = builder.assistant_instructions
    assert instructions and builder.template_hashes["assistant"]
    chat = [r.prompt for r, _ in log if not r.raw]
    assert chat and all(p[0] == {"role": "system", "content": instructions} for p in chat)
    history = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."},
               {"role": "user", "content": "And?"}]
    assert with_instructions(history, instructions) == ({"role": "system", "content": instructions}, *history)
    own_system = [{"role": "system", "content": "Be terse."}] + history
    assert with_instructions(own_system, instructions) == tuple(own_system)  # a conversation's own wins


def test_message_stats_count_tokens_by_branch_and_role(built):
    _, trees, _ = built
    stats = message_stats(trees, lambda text: len(text.split()))
    words = [len(m["content"].split()) for t in trees for m in t["rejected"][len(t["context"]):] if m["role"] == "user"]
    assert set(stats) == {f"{b}_{r}_mean_tokens" for b in ("chosen", "rejected") for r in ("user", "assistant")}
    assert stats["rejected_user_mean_tokens"] == round(sum(words) / len(words), 1)


def test_a_train_simulation_seed_redraws_the_train_trees_only_and_resample_adds_a_third_branch(tiny_model, seeds):
    """simulate.train_seed grows the train trees with another seed and leaves the held-out trees as simulate.seed
    grows them; simulate.resample answers the chosen branch's user messages again."""
    generator = Generator(TransformersBackend(str(tiny_model), "float32", batch_size=4))
    same = TreeBuilder(generator, sim_params()).build_splits(seeds)
    other = TreeBuilder(generator, sim_params(train_seed=7, resample=True)).build_splits(seeds)
    by_split = {name: {s: [t for t in trees if t["split"] == s] for s in ("train", "test")}
                for name, trees in (("same", same), ("other", other))}
    assert by_split["other"]["test"] == by_split["same"]["test"] and by_split["same"]["test"]
    train, same_train = by_split["other"]["train"], by_split["same"]["train"]
    assert train and [t["chosen"] for t in train] != [t["chosen"] for t in same_train]
    assert {t["provenance"]["seed"] for t in train} == {7} and "resampled" not in same_train[0]
    for t in (t for t in train if "resampled" in t):
        n = len(t["context"])
        assert [x for x in t["resampled"] if x["role"] == "user"] == [x for x in t["chosen"] if x["role"] == "user"]
        assert len(t["resampled"]) == len(t["chosen"]) and t["resampled"][-1]["role"] == "assistant"
        assert t["resampled"][n + 1:] != t["chosen"][n + 1:]  # answered again, with other seeds
    assert any("resampled" in t for t in train)


def test_cut_replies_add_up_over_the_splits_and_count_the_resampled_branch(tiny_model, seeds):
    """simulate.cut_replies' count (replies kept though cut at max_new_tokens) of build_splits: the train and the
    held-out trees' counts added, and with simulate.resample the resampled answers' too."""
    generator = Generator(TransformersBackend(str(tiny_model), "float32", batch_size=4))
    apart = []
    for split in ("train", "test"):
        builder = TreeBuilder(generator, sim_params(turns=2))
        builder.build([(row, s) for row, s in seeds if s == split])
        apart.append(builder.cut_replies)
    whole = TreeBuilder(generator, sim_params(turns=2))
    whole.build_splits(seeds)
    assert whole.cut_replies == sum(apart) and all(apart)  # 8 new tokens: the tiny model's replies run on
    resampled = TreeBuilder(generator, sim_params(turns=2, resample=True))
    trees = resampled.build_splits(seeds)
    assert any("resampled" in t for t in trees) and resampled.cut_replies > whole.cut_replies
