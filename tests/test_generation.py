import pytest

from music_rm.generation.cache import GenerationCache
from music_rm.generation.generator import Generator
from music_rm.generation.request import Request
from music_rm.generation.transformers_backend import TransformersBackend
from music_rm.core.params import Sampling

SAMPLED = Sampling(max_new_tokens=6, temperature=1.0, top_p=1.0)
GREEDY = Sampling(max_new_tokens=6, temperature=0.0, top_p=1.0)


def chats(n, sampling=SAMPLED):
    return [Request(({"role": "user", "content": "word " * (i % 5 + 1) + f"question {i}"},), sampling)
            for i in range(n)]


@pytest.fixture(scope="module")
def backend(tiny_model):
    return TransformersBackend(str(tiny_model), "float32", batch_size=4)


class Crashing:
    """Delegates to a real backend, then dies before its n-th unit, as a killed process would."""

    def __init__(self, backend, units_before_crash):
        self.backend, self.left = backend, units_before_crash
        self.identity = backend.identity
        self.plan = backend.plan

    def run_many(self, jobs):
        for j, result in self.backend.run_many(jobs):
            if self.left == 0:
                raise KeyboardInterrupt("killed")
            self.left -= 1
            yield j, result


def test_plan_groups_by_sampling_and_prefix_and_sorts_by_length(backend):
    requests = chats(6) + [Request("x" * 5, SAMPLED, prefix="A:"), Request("y", SAMPLED, prefix="B:")]
    units = backend.plan(requests)
    assert sorted(i for unit in units for i in unit) == list(range(8))
    assert all(len(unit) <= 4 for unit in units)
    assert [6] in units and [7] in units
    for unit in units:
        lengths = [len(backend._ids(requests[i])) for i in unit]
        assert lengths == sorted(lengths)


def test_rerun_makes_no_model_calls(backend, tmp_path):
    cache = GenerationCache(tmp_path / "cache.sqlite")
    first = Generator(backend, cache)
    outputs = first.generate(chats(10), seed=1)
    assert (first.model_calls, first.cache_hits) == (10, 0)
    again = Generator(backend, GenerationCache(tmp_path / "cache.sqlite"))
    assert again.generate(chats(10), seed=1) == outputs
    assert (again.model_calls, again.cache_hits) == (0, 10)


def test_a_changed_request_regenerates_only_its_unit(backend, tmp_path):
    cache = GenerationCache(tmp_path / "cache.sqlite")
    Generator(backend, cache).generate(chats(12), seed=1)
    changed = chats(12)  # the longest request grows: the length-sorted batches keep their members
    changed[4] = Request(({"role": "user", "content": "word " * 9 + "question 4"},), SAMPLED)
    again = Generator(backend, cache)
    again.generate(changed, seed=1)
    assert again.model_calls == 4 and again.cache_hits == 8


def test_resume_after_a_crash_gives_the_uninterrupted_outputs(backend, tmp_path):
    uninterrupted = Generator(backend).generate(chats(12), seed=3)
    cache = GenerationCache(tmp_path / "cache.sqlite")
    with pytest.raises(KeyboardInterrupt):
        Generator(Crashing(backend, units_before_crash=2), cache).generate(chats(12), seed=3)
    resumed = Generator(backend, GenerationCache(tmp_path / "cache.sqlite"))
    assert resumed.generate(chats(12), seed=3) == uninterrupted
    assert (resumed.model_calls, resumed.cache_hits) == (4, 8)


def test_shared_prefix_gives_the_same_greedy_text_as_the_full_prompt(backend):
    prefix = "Example one.\nExample two.\nAnswer:"
    suffixes = [" short", " a somewhat longer prompt here", " mid length"]
    with_prefix = Generator(backend).generate([Request(s, GREEDY, prefix=prefix) for s in suffixes], seed=0)
    whole = Generator(backend).generate([Request(prefix + s, GREEDY) for s in suffixes], seed=0)
    assert with_prefix == whole


def test_different_seeds_give_different_samples(backend):
    a = Generator(backend).generate(chats(8), seed=1)
    b = Generator(backend).generate(chats(8), seed=2)
    assert a != b
