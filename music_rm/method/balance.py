"""Length-balanced training pairs (contrast.length_balance): as many pairs whose chosen answer is longer as pairs
whose chosen answer is shorter, so that answer length alone predicts no label.

"Longer" is conversation.length_difference's sign: the characters of the assistant messages after the part both
conversations share, chosen minus rejected (what every suite's "longer answer wins" reference reads). A pair of
equal lengths is neither: balancing keeps every such pair, and the share of pairs with the chosen answer longer
counts it ½, as the longer-answer reference does, so a balanced set's share is exactly 0.5. The larger side is
subsampled at random (contrast.balance_seed) to the smaller side's size; the pairs kept stay in file order.
"""
import random

from ..data.conversation import length_difference


def side(pair: dict) -> int:
    """1: the chosen answer is longer, -1: shorter, 0: equal lengths."""
    difference = length_difference(pair["chosen"], pair["rejected"])
    return (difference > 0) - (difference < 0)


def length_share(pairs: list[dict]) -> dict:
    """{pairs, longer, shorter, equal, share}: how many pairs have the chosen answer longer, shorter or of equal
    length, and the share with it longer (equal lengths counting ½; None for no pairs)."""
    sides = [side(p) for p in pairs]
    longer, shorter = sides.count(1), sides.count(-1)
    equal = len(sides) - longer - shorter
    return {"pairs": len(sides), "longer": longer, "shorter": shorter, "equal": equal,
            "share": round((longer + equal / 2) / len(sides), 6) if sides else None}


def balance(pairs: list[dict], rng: random.Random) -> list[dict]:
    """`pairs` with the larger of the chosen-longer and chosen-shorter sides subsampled to the smaller's size."""
    sides = [side(p) for p in pairs]
    longer = [i for i, s in enumerate(sides) if s == 1]
    shorter = [i for i, s in enumerate(sides) if s == -1]
    larger, smaller = (longer, shorter) if len(longer) >= len(shorter) else (shorter, longer)
    dropped = set(larger) - set(rng.sample(larger, len(smaller)))
    return [p for i, p in enumerate(pairs) if i not in dropped]


def balanced_draw(pool: list[dict], count: int, rng: random.Random) -> list[dict]:
    """`count` pairs drawn at random, with replacement, from a balanced `pool`: as many chosen-longer as
    chosen-shorter ones (one more of either, at random, when the count left for them is odd and the pool has no
    equal-length pair to take it), and equal-length ones in their share of the pool; in random order."""
    by_side = {s: [p for p in pool if side(p) == s] for s in (1, -1, 0)}
    if not by_side[1] or not by_side[-1]:  # nothing to balance: all of one length or empty
        return [rng.choice(pool) for _ in range(count)] if pool else []
    equal = round(count * len(by_side[0]) / len(pool))
    each, odd = divmod(count - equal, 2)
    counts = {1: each, -1: each, 0: equal}
    counts[0 if by_side[0] else rng.choice((1, -1))] += odd
    drawn = [rng.choice(by_side[s]) for s in (1, -1, 0) for _ in range(counts[s])]
    rng.shuffle(drawn)
    return drawn
