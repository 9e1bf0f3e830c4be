"""Preference pairs from MUSIC trees: both branches cut after K simulated assistant turns.

K = 1 is the classic last-turn contrast (same prompt, one answer to a subtly different instruction);
K > 1 makes the pair differ across K turns, user turns included.
"""
import random

from ..core.errors import ParamsError


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


def volume_matched(original_train: list[dict], extra: int, seed: int) -> list[dict]:
    """The original pairs plus `extra` of them drawn again at random: as many pairs as original + MUSIC,
    so a comparison with the MUSIC variant is not a comparison of data volumes."""
    rng = random.Random(seed)
    return original_train + [rng.choice(original_train) for _ in range(extra)] if original_train else []


def assemble(original_train: list[dict], trees: list[dict], k: int, seed: int) -> dict[str, list[dict]]:
    """The MUSIC train and test pairs at K = `k`, the train set that adds them to the original pairs, its
    volume-matched control, and the held-out pairs at every K the trees allow (`test_by_k`, each with its
    `k`), which evaluation reads as they are."""
    pairs = pairs_from_trees(trees, k)
    music_train = [p for p in pairs if p["split"] == "train"]
    music_test = [p for p in pairs if p["split"] == "test"]
    test_trees = [t for t in trees if t["split"] == "test"]
    turns = min((simulated_turns(t) for t in test_trees), default=0)
    return {"train": music_train, "test": music_test, "train_with_original": original_train + music_train,
            "train_volume_matched": volume_matched(original_train, len(music_train), seed),
            "test_by_k": [p for kk in range(1, turns + 1) for p in pairs_from_trees(test_trees, kk)]}
