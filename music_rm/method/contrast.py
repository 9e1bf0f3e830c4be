"""Preference pairs from MUSIC trees: both branches cut after K simulated assistant turns.

K = 1 is the classic last-turn contrast (same prompt, one answer to a subtly different instruction);
K > 1 makes the pair differ across K turns, user turns included.

Lengths are counted here with the length rule training follows (data/lengths.py) and the base model's chat
template: per K, how many MUSIC train pairs fit `train.config.max_length` (some by losing their oldest shared
exchanges) and how many training will drop; the volume-matched control adds as many original pairs as there are
MUSIC pairs that will train, drawn among the original pairs that will train themselves, so the control trains on
as many pairs as the MUSIC variant does. The draw is made once per training seed (train.seeds), seeded by it, so
the control's seeds vary its extra pairs as the MUSIC variant's seeds vary its initialisation and order.

Harder contrast (`contrast.min_relatedness`): a train tree is kept when every hidden instruction of its pair at
K (turns 1..K) shares at least that share of content words with the user message it replaced (simulate's
`relatedness`, a Jaccard overlap); an unrelated hidden instruction makes the rejected branch easy to tell apart.
The held-out trees are all kept, so experiments with and without the filter are scored on the same pairs; the
volume-matched control follows the MUSIC pairs that are kept.
"""
import random
from collections.abc import Callable

from ..core.errors import ParamsError
from ..data.chat_template import load_tokenizer
from ..data.lengths import pair_ids
from .simulate import relatedness

# the summary numbers a pipeline run carries from contrast (tracking.log_results)
HEADLINE = ("pairs_train", "pairs_test")


class ContrastError(ParamsError):
    """contrast.turns does not fit the trees."""


def cut(messages: list[dict], context_len: int, k: int) -> list[dict]:
    """`messages` up to and including the k-th assistant message after the shared context."""
    seen = 0
    for i in range(context_len, len(messages)):
        if messages[i]["role"] == "assistant":
            seen += 1
            if seen == k:
                return messages[: i + 1]
    raise ContrastError(f"only {seen} simulated assistant turns, cannot cut at {k}")


def simulated_turns(tree: dict) -> int:
    return sum(1 for m in tree["chosen"][len(tree["context"]):] if m["role"] == "assistant")


def pairs_from_trees(trees: list[dict], k: int) -> list[dict]:
    """One pair per tree, in fetch's schema plus {k, seed_id, split}."""
    if not trees:
        return []
    available = min(simulated_turns(t) for t in trees)
    if not isinstance(k, int) or not 1 <= k <= available:
        raise ContrastError(f"contrast.turns must be an integer in 1..{available} (the trees hold "
                            f"{available} simulated turns, simulate.turns), got {k!r}")
    pairs = []
    for t in trees:
        n = len(t["context"])
        pairs.append({"id": f"{t['id']}-k{k}", "source": "music", "chosen": cut(t["chosen"], n, k),
                      "rejected": cut(t["rejected"], n, k), "k": k, "seed_id": t["seed_id"], "split": t["split"]})
    return pairs


def tree_relatedness(tree: dict, k: int) -> float:
    """The least relatedness of the hidden instructions in the tree's pair at K (turns 1..K); 0 without any."""
    return min((relatedness(h["original"], h["rewritten"]) for h in tree["hidden"] if h["turn"] <= k), default=0.0)


def volume_matched(original_train: list[dict], extra: int, seed: int, pool: list[dict]) -> list[dict]:
    """The original pairs plus `extra` pairs drawn again at random from `pool` (the original pairs that will
    train): as many training pairs as original + MUSIC, so a comparison with the MUSIC variant is not a
    comparison of data volumes."""
    rng = random.Random(seed)
    return original_train + [rng.choice(pool) for _ in range(extra)] if pool else list(original_train)


def fit_counts(outcomes: list[str]) -> dict:
    """{pairs, fit, truncated, dropped} of pairs' fates in training ("fit", "truncated" or "dropped"); `fit`
    counts the truncated ones too: every pair that will train."""
    return {"pairs": len(outcomes), "fit": sum(o != "dropped" for o in outcomes),
            "truncated": outcomes.count("truncated"), "dropped": outcomes.count("dropped")}


def length_outcome(tokenizer, max_length: int, truncation: str) -> Callable[[dict], str]:
    """A pair's fate in training under the length rule: "fit", "truncated" or "dropped"."""
    def outcome(pair: dict) -> str:
        ids, shortened, _ = pair_ids(tokenizer, pair, max_length, truncation)
        return "dropped" if ids is None else "truncated" if shortened else "fit"
    return outcome


def assemble(original_train: list[dict], trees: list[dict], k: int, seeds: list[int], outcome: Callable[[dict], str],
             min_relatedness: float) -> tuple[dict[str, list[dict]], dict[int, list[dict]], dict]:
    """(sets, volume-matched draws, length counts). Sets: the MUSIC train and test pairs at K = `k`, the train set
    that adds them to the original pairs, and the held-out pairs at every K the trees allow
    (`test_by_k`, each with its `k`), which evaluation reads as they are. Counts, by `outcome` (a pair's fate in
    training): the MUSIC train pairs at every K the train trees allow (`music_by_k`) and the original pairs. Draws:
    {seed: the volume-matched control drawn with that seed} for each training seed. Counts also the train trees
    kept and dropped by `min_relatedness` (`relatedness`)."""
    pairs_from_trees(trees, k)  # K checked against every tree, the dropped ones too
    train_all = sum(t["split"] == "train" for t in trees)
    trees = [t for t in trees if t["split"] != "train" or tree_relatedness(t, k) >= min_relatedness]
    pairs = pairs_from_trees(trees, k)
    music_train = [p for p in pairs if p["split"] == "train"]
    music_test = [p for p in pairs if p["split"] == "test"]
    test_trees = [t for t in trees if t["split"] == "test"]
    train_trees = [t for t in trees if t["split"] == "train"]
    turns = min((simulated_turns(t) for t in test_trees), default=0)
    train_turns = min((simulated_turns(t) for t in train_trees), default=0)
    music_by_k = {kk: [outcome(p) for p in (music_train if kk == k else pairs_from_trees(train_trees, kk))]
                  for kk in range(1, train_turns + 1)}
    original = [outcome(p) for p in original_train]
    counts = {"music_by_k": {kk: fit_counts(o) for kk, o in music_by_k.items()}, "original": fit_counts(original),
              "relatedness": {"min": min_relatedness, "train_trees": train_all, "kept": len(train_trees),
                              "dropped": train_all - len(train_trees)}}
    trained_music = counts["music_by_k"][k]["fit"] if music_train else 0
    pool = [p for p, fate in zip(original_train, original) if fate != "dropped"]
    sets = {"train": music_train, "test": music_test, "train_with_original": original_train + music_train,
            "test_by_k": [p for kk in range(1, turns + 1) for p in pairs_from_trees(test_trees, kk)]}
    return sets, {seed: volume_matched(original_train, trained_music, seed, pool) for seed in seeds}, counts


def contrast(original_train: list[dict], trees: list[dict], k: int, seeds: list[int], base_model: str,
             max_length: int, truncation: str, min_relatedness: float
             ) -> tuple[dict[str, list[dict]], dict[int, list[dict]], dict]:
    """`assemble` with the lengths counted through the base model's chat template, as training will count them
    (train.config.max_length and truncation)."""
    return assemble(original_train, trees, k, seeds, length_outcome(load_tokenizer(base_model), max_length, truncation),
                    min_relatedness)
