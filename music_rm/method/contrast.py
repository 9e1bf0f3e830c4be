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

Control arms (`control_arms`; why each, and what it rules out: docs/evaluation.md, "Control arms"), each the
original pairs plus as many pairs as the MUSIC variant adds, from the same kept train trees:
- off-topic: the MUSIC pair with its rejected side's assistant turns taken from another train tree's chosen branch,
  turn by turn (one donor per tree, drawn per training seed): answers to a random other prompt's instructions;
- style: the original pair's own two answers at turn 1, each followed by the chosen branch's later user messages
  and a simulated answer to each (chosen side: the chosen branch's; rejected side: the resampled branch's,
  simulate.resample): both sides answer the real instructions, the label is the original pair's;
- diversity-matched: the volume-matched control with distinct original pairs instead of repeats, drawn per training
  seed from fetch's reserve (reserve.jsonl); where the reserve is short, repeats fill the rest, and the summary says
  how many;
- related-only: the MUSIC pairs of the trees `min_relatedness` at the level `contrast.related_only` keeps.

Decontamination (decontaminate.drop): the original train pairs, reserve pairs and MUSIC train trees that the
decontaminate stage lists (their prompts share an n-gram with an evaluation suite's) are left out first, of every
variant and every control arm.

Length balance (`contrast.length_balance`, balance.py): among the pairs that will train, the MUSIC train pairs and,
apart, the original train pairs are subsampled so that the chosen answer is longer in as many as it is shorter;
the balanced originals are every variant's (`original`, the baseline's pairs; the MUSIC variant's and the
control's first pairs), the control draws its extra pairs from them as many as the balanced MUSIC pairs, as
many chosen-longer as chosen-shorter. The summary gives each set's chosen-longer share before and after
(`chosen_longer`), with or without balancing. The control arms start from the balanced originals and balance the
pairs each adds apart, as the MUSIC pairs are (the diversity-matched arm draws its distinct pairs from the
balanced reserve: balanced in expectation, not exactly); each arm's share is in its counts (`chosen_longer`).
"""
import random
from collections.abc import Callable

from ..core.errors import ParamsError
from ..data.chat_template import load_tokenizer
from ..data.lengths import pair_ids
from .balance import balance, balanced_draw, length_share
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


def related_enough(tree: dict, k: int, level: float) -> bool:
    """Whether `contrast.min_relatedness` at `level` keeps a train tree at K."""
    return tree_relatedness(tree, k) >= level


def volume_matched(original_train: list[dict], extra: int, seed: int, pool: list[dict],
                   balanced: bool = False) -> list[dict]:
    """The original pairs plus `extra` pairs drawn again at random from `pool` (the original pairs that will
    train): as many training pairs as original + MUSIC, so a comparison with the MUSIC variant is not a
    comparison of data volumes; `balanced`: as many chosen-longer as chosen-shorter (balance.balanced_draw)."""
    rng = random.Random(seed)
    if balanced:
        return original_train + balanced_draw(pool, extra, rng)
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


def training_inputs(original_train: list[dict], trees: list[dict], k: int, min_relatedness: float,
                    left_out: dict[str, list[str]] | None) -> tuple[list[dict], list[dict], dict]:
    """(the original train pairs, the trees, counts of what was taken out): without the training items `left_out`
    ({"original_pairs": ids, "music_trees": ids}, decontaminate's) lists (`decontaminated`) and the train trees
    `min_relatedness` drops at K (`relatedness`); the held-out trees are all kept."""
    left_out = {kind: set(ids) for kind, ids in (left_out or {}).items()}
    unfiltered = len(original_train), sum(t["split"] == "train" for t in trees)
    original_train = [p for p in original_train if p["id"] not in left_out.get("original_pairs", ())]
    trees = [t for t in trees if t["split"] != "train" or t["id"] not in left_out.get("music_trees", ())]
    train_all = sum(t["split"] == "train" for t in trees)
    trees = [t for t in trees if t["split"] != "train" or related_enough(t, k, min_relatedness)]
    kept = sum(t["split"] == "train" for t in trees)
    return original_train, trees, {
        "relatedness": {"min": min_relatedness, "train_trees": train_all, "kept": kept, "dropped": train_all - kept},
        "decontaminated": {"original_pairs": unfiltered[0] - len(original_train),
                           "music_trees": unfiltered[1] - train_all}}


def assemble(original_train: list[dict], trees: list[dict], k: int, seeds: list[int], outcome: Callable[[dict], str],
             min_relatedness: float, length_balance: bool, balance_seed: int,
             left_out: dict[str, list[str]] | None = None) -> tuple[dict[str, list[dict]], dict[int, list[dict]], dict]:
    """(sets, volume-matched draws, counts). Sets: the original train pairs every variant trains on (`original`),
    the MUSIC train and test pairs at K = `k`, the train set that adds them to the original pairs, and the held-out
    pairs at every K the trees allow (`test_by_k`, each with its `k`), which evaluation reads as they are. Counts,
    by `outcome` (a pair's fate in training): the MUSIC train pairs at every K the train trees allow (`music_by_k`)
    and the original pairs. Draws: {seed: the volume-matched control drawn with that seed} for each training seed.
    Counts also the train trees kept and dropped by `min_relatedness` (`relatedness`), the training items
    `left_out` ({"original_pairs": ids, "music_trees": ids}, decontaminate's) took out (`decontaminated`), and
    each set's chosen-longer share before and after `length_balance` (`chosen_longer`)."""
    pairs_from_trees(trees, k)  # K checked against every tree, the dropped ones too
    original_train, trees, counts = training_inputs(original_train, trees, k, min_relatedness, left_out)
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
              **counts}
    pool = [p for p, fate in zip(original_train, original) if fate != "dropped"]
    if length_balance:  # among the pairs that will train
        rng = random.Random(balance_seed)
        originals = balance(pool, rng)
        music = balance([p for p, fate in zip(music_train, music_by_k.get(k, [])) if fate != "dropped"], rng)
        trained_music, pool = len(music), originals
    else:
        originals, music = original_train, music_train
        trained_music = counts["music_by_k"][k]["fit"] if music_train else 0
    sets = {"original": originals, "train": music, "train_with_original": originals + music, "test": music_test,
            "test_by_k": [p for kk in range(1, turns + 1) for p in pairs_from_trees(test_trees, kk)]}
    draws = {seed: volume_matched(originals, trained_music, seed, pool, length_balance) for seed in seeds}
    counts["chosen_longer"] = {
        "balanced": length_balance, "seed": balance_seed,
        **{name: {"before": length_share(before), "after": length_share(sets[name])}
           for name, before in (("original", original_train), ("train", music_train),
                                ("train_with_original", original_train + music_train))},
        "volume_matched": {seed: length_share(rows) for seed, rows in draws.items()}}
    return sets, draws, counts


def contrast(original_train: list[dict], trees: list[dict], k: int, seeds: list[int], base_model: str,
             max_length: int, truncation: str, min_relatedness: float, length_balance: bool, balance_seed: int,
             left_out: dict[str, list[str]] | None, reserve: list[dict], related_only: float
             ) -> tuple[dict[str, list[dict]], dict[int, list[dict]], dict, dict]:
    """(`assemble`'s sets, draws and counts, `control_arms`' arms and counts in `counts["arms"]`) with the lengths
    counted through the base model's chat template, as training will count them (train.config.max_length and
    truncation). The arms start from the original pairs every variant trains on and grow from the train trees the
    MUSIC variant's pairs come from; `left_out` takes its pairs out of the reserve too."""
    outcome = length_outcome(load_tokenizer(base_model), max_length, truncation)
    sets, draws, counts = assemble(original_train, trees, k, seeds, outcome, min_relatedness, length_balance,
                                   balance_seed, left_out)
    seed_pairs, kept, _ = training_inputs(original_train, trees, k, min_relatedness, left_out)
    listed = set((left_out or {}).get("original_pairs", ()))
    clean_reserve = [p for p in reserve if p["id"] not in listed]
    arms, arm_counts = control_arms(sets["original"], seed_pairs, clean_reserve, kept, k, seeds, outcome, related_only,
                                    balance_seed if length_balance else None)
    arm_counts["diversity_matched"]["reserve_left_out"] = len(reserve) - len(clean_reserve)
    return sets, draws, {**counts, "arms": arm_counts}, arms


def donors(count: int, seed: int) -> list[int]:
    """A random cyclic permutation of range(count) drawn with `seed` (Sattolo's algorithm): donors[i] != i for
    every i when count > 1."""
    order, rng = list(range(count)), random.Random(seed)
    for i in range(count - 1, 0, -1):
        j = rng.randrange(i)
        order[i], order[j] = order[j], order[i]
    return order


def assistant_turns(messages: list[dict], context_len: int) -> list[dict]:
    return [m for m in messages[context_len:] if m["role"] == "assistant"]


def with_answers(messages: list[dict], context_len: int, answers: list[dict]) -> list[dict]:
    """`messages` with its assistant turns after the context replaced, in order, by `answers`."""
    given = iter(answers)
    return messages[:context_len] + [next(given) if m["role"] == "assistant" else m for m in messages[context_len:]]


def offtopic_pairs(pairs: list[dict], trees: list[dict], seed: int) -> list[dict]:
    """The off-topic control's pairs: each MUSIC train pair (of `trees`, in order) with its rejected side's assistant
    turns replaced by another tree's chosen assistant turns, turn by turn (`donors`, drawn with `seed`); none with
    fewer than two trees."""
    if len(trees) < 2:
        return []
    given = donors(len(trees), seed)
    out = []
    for pair, tree, donor in zip(pairs, trees, given):
        n = len(tree["context"])
        answers = assistant_turns(trees[donor]["chosen"], len(trees[donor]["context"]))
        out.append({**pair, "id": f"{pair['id']}-offtopic", "source": "offtopic", "donor": trees[donor]["id"],
                    "rejected": with_answers(pair["rejected"], n, answers)})
    return out


def style_pairs(trees: list[dict], k: int, originals: dict[str, dict]) -> tuple[list[dict], int]:
    """(the style control's pairs, the trees left out: no resampled branch, or a seed pair whose two sides do not
    share the prompt). Chosen: the prompt, the original pair's chosen answer, then the chosen branch's turns 2..K;
    rejected: the prompt, the original pair's rejected answer, then the resampled branch's turns 2..K (the same user
    messages, answered again). The label is the original pair's; nothing after turn 1 tells the sides apart."""
    out, left_out = [], 0
    for t in trees:
        seed_row, n = originals.get(t["seed_id"]), len(t["context"])
        prompt = t["chosen"][:n + 1]
        if "resampled" not in t or seed_row is None or seed_row["rejected"][:n + 1] != prompt:
            left_out += 1
            continue
        later = {branch: cut(t[branch], n, k)[n + 2:] for branch in ("chosen", "resampled")}
        out.append({"id": f"{t['id']}-k{k}-style", "source": "style", "k": k, "seed_id": t["seed_id"],
                    "split": t["split"], "chosen": seed_row["chosen"][:n + 2] + later["chosen"],
                    "rejected": seed_row["rejected"][:n + 2] + later["resampled"]})
    return out, left_out


def diversity_matched(original_train: list[dict], extra: int, seed: int, reserve: list[dict],
                      repeat_pool: list[dict]) -> tuple[list[dict], int]:
    """(the original pairs plus `extra` distinct reserve pairs drawn with `seed`, the repeats that make up the count
    where the reserve holds fewer, drawn from `repeat_pool`)."""
    rng = random.Random(seed)
    distinct = rng.sample(reserve, min(extra, len(reserve)))
    short = extra - len(distinct)
    return original_train + distinct + ([rng.choice(repeat_pool) for _ in range(short)] if repeat_pool else []), short


def control_arms(base: list[dict], seed_pairs: list[dict], reserve: list[dict], trees: list[dict], k: int,
                 seeds: list[int], outcome: Callable[[dict], str], related_only: float, balance_seed: int | None
                 ) -> tuple[dict, dict]:
    """({arm: its train pairs, or {seed: its train pairs} for the arms drawn per training seed}, {arm: counts}) of
    the four control arms (module docstring): `base` (the original pairs every variant trains on) plus the pairs
    each arm adds, from the train trees of `trees` (those the MUSIC variant's pairs come from); `seed_pairs`: the
    original pairs the trees grew from (the style arm's turn-1 answers). With `balance_seed` (contrast.length_balance)
    the pairs each arm adds are those that will train, balanced for which side is longer as the MUSIC pairs are,
    and the diversity-matched arm draws from the balanced reserve. Counts per arm: `pairs` (in its file; the first
    seed's for a drawn arm), `added` (beyond `base`), `fit` (that will train, by `outcome`), `chosen_longer` (the
    share with the chosen answer longer, equal lengths ½); and what each arm lacks: trees left out (style), reserve
    pairs short (diversity_matched), trees kept (related)."""
    fates = {}

    def fate(pair: dict) -> str:
        if pair["id"] not in fates:
            fates[pair["id"]] = outcome(pair)
        return fates[pair["id"]]

    def balanced(added: list[dict]) -> list[dict]:
        if balance_seed is None:
            return added
        return balance([p for p in added if fate(p) != "dropped"], random.Random(balance_seed))

    kept = [t for t in trees if t["split"] == "train"]
    music = pairs_from_trees(kept, k)
    trained_music = len(balanced([p for p in music if fate(p) != "dropped"]))
    fitting_reserve = balanced([p for p in reserve if fate(p) != "dropped"])
    repeat_pool = [p for p in base if fate(p) != "dropped"] + fitting_reserve
    style, left_out = style_pairs(kept, k, {p["id"]: p for p in seed_pairs})
    related = [t for t in kept if related_enough(t, k, related_only)]
    drawn = {seed: diversity_matched(base, trained_music, seed, fitting_reserve, repeat_pool) for seed in seeds}
    arms = {"offtopic": {seed: base + balanced(offtopic_pairs(music, kept, seed)) for seed in seeds},
            "style": base + balanced(style), "diversity_matched": {seed: rows for seed, (rows, _) in drawn.items()},
            "related": base + balanced(pairs_from_trees(related, k))}

    def counted(rows: list[dict]) -> dict:
        return {"pairs": len(rows), "added": len(rows) - len(base), "fit": sum(fate(p) != "dropped" for p in rows),
                "chosen_longer": length_share(rows)["share"]}

    first = seeds[0]
    counts = {"offtopic": counted(arms["offtopic"][first]),
              "style": {**counted(arms["style"]), "trees_left_out": left_out},
              "diversity_matched": {**counted(arms["diversity_matched"][first]), "reserve": len(reserve),
                                    "reserve_fit": len(fitting_reserve), "repeats": drawn[first][1]},
              "related": {**counted(arms["related"]), "min_relatedness": related_only, "trees": len(related),
                          "of": len(kept)}}
    return arms, counts


def arms_lines(counts: dict) -> list[str]:
    """One line per control arm: its train pairs, what it adds, and what it lacks (`control_arms`' counts)."""
    o, s, d, r = (counts[arm] for arm in ("offtopic", "style", "diversity_matched", "related"))
    return [f"contrast: arm offtopic: {o['pairs']} train pairs, {o['fit']} fit ({o['added']} MUSIC pairs answered "
            "off-topic)",
            f"contrast: arm style: {s['pairs']} train pairs, {s['fit']} fit ({s['added']} resampled; "
            f"{s['trees_left_out']} trees left out: no resampled branch or shared prompt)",
            f"contrast: arm diversity_matched: {d['pairs']} train pairs, {d['fit']} fit ({d['added'] - d['repeats']} "
            f"distinct of the reserve's {d['reserve']}" + (f"; {d['repeats']} repeats: the reserve is short"
                                                            if d["repeats"] else "") + ")",
            f"contrast: arm related: {r['pairs']} train pairs, {r['fit']} fit ({r['trees']} of {r['of']} train trees "
            f"at relatedness >= {r['min_relatedness']})"]
