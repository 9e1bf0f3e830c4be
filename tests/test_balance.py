"""Length-balanced training pairs (contrast.length_balance, music_rm/method/balance.py): as many pairs with the
chosen answer longer as shorter, MUSIC and original pairs apart, the volume-matched control sized and drawn to
match; the shares before and after in contrast's summary."""
import random

from music_rm.data.conversation import length_difference
from music_rm.method.balance import balance, balanced_draw, length_share, side
from music_rm.method.contrast import assemble
from tests.test_contrast import fits, original_pair, tree


def sided(pid, s):
    """An original pair whose chosen answer is longer (s = 1), shorter (-1) or as long (0)."""
    return original_pair(pid, *{1: ("a longer answer", "short"), -1: ("short", "a longer answer"),
                                0: ("same", "size")}[s])


def test_side_is_the_sign_of_the_length_difference_after_the_shared_part():
    pair = {"chosen": [{"role": "user", "content": "a long shared opening"}, {"role": "assistant", "content": "xx"}],
            "rejected": [{"role": "user", "content": "a long shared opening"}, {"role": "assistant", "content": "y"}]}
    assert length_difference(pair["chosen"], pair["rejected"]) == 1 and side(pair) == 1
    assert [side(sided("p", s)) for s in (1, -1, 0)] == [1, -1, 0]


def test_length_share_counts_equal_lengths_half():
    pairs = [sided("a", 1), sided("b", 1), sided("c", -1), sided("d", 0)]
    assert length_share(pairs) == {"pairs": 4, "longer": 2, "shorter": 1, "equal": 1, "share": 0.625}
    assert length_share([])["share"] is None


def test_balance_subsamples_the_larger_side_keeps_equal_lengths_and_file_order():
    pairs = [sided(f"p{i}", s) for i, s in enumerate([1, 1, 0, 1, -1, 1, 1, -1, 0, 1])]
    kept = balance(pairs, random.Random(0))
    share = length_share(kept)
    assert (share["longer"], share["shorter"], share["equal"], share["share"]) == (2, 2, 2, 0.5)
    assert [p for p in pairs if p in kept] == kept  # file order
    assert {p["id"] for p in kept} >= {"p2", "p4", "p7", "p8"}  # the smaller side and the equal ones, all
    draws = {tuple(p["id"] for p in balance(pairs, random.Random(seed))) for seed in range(8)}
    assert len(draws) > 1 and balance(pairs, random.Random(3)) == balance(pairs, random.Random(3))


def test_balanced_draw_has_as_many_longer_as_shorter():
    pool = [sided(f"p{i}", s) for i, s in enumerate([1, 1, -1, -1, 0])]
    # equal-length pairs in their share of the pool (1 in 5: round(10 / 5) = round(11 / 5) = 2), the rest split
    # evenly; the odd one left (11 - 2 = 9) goes to an equal-length pair
    for count, expected in ((10, (4, 4, 2)), (11, (4, 4, 3))):
        share = length_share(balanced_draw(pool, count, random.Random(count)))
        assert (share["pairs"], share["longer"], share["shorter"], share["equal"]) == (count, *expected)
    no_equal = [sided(f"p{i}", s) for i, s in enumerate([1, -1])]
    share = length_share(balanced_draw(no_equal, 7, random.Random(0)))
    assert share["pairs"] == 7 and abs(share["longer"] - share["shorter"]) == 1


def length_trees():
    """Four train trees at K = 2: the chosen branch longer in three (answers padded), shorter in one; one test tree."""
    trees = [tree(f"t{i}", "train") for i in range(4)] + [tree("x", "test")]
    for t in trees[:3]:
        for message in t["chosen"][len(t["context"]):]:
            if message["role"] == "assistant":
                message["content"] += " and more"
    return trees


def test_assemble_balances_music_and_original_pairs_apart_and_matches_the_control():
    originals = [sided(f"o{i}", s) for i, s in enumerate([1, 1, 1, 1, -1, -1, 0])]
    sets, draws, counts = assemble(originals, length_trees(), 2, [0, 1], fits, 0.0, length_balance=True,
                                   balance_seed=5)
    shares = counts["chosen_longer"]
    assert shares["balanced"] is True and shares["seed"] == 5
    assert shares["original"]["before"] == {"pairs": 7, "longer": 4, "shorter": 2, "equal": 1, "share": 0.642857}
    assert shares["original"]["after"] == {"pairs": 5, "longer": 2, "shorter": 2, "equal": 1, "share": 0.5}
    assert shares["train"]["before"]["share"] == 0.75 and shares["train"]["after"] == {
        "pairs": 2, "longer": 1, "shorter": 1, "equal": 0, "share": 0.5}
    assert shares["train_with_original"]["after"]["share"] == 0.5 and len(sets["train_with_original"]) == 7
    for seed in (0, 1):  # the control: as many pairs as the MUSIC variant, all original, balanced too
        assert len(draws[seed]) == len(sets["train_with_original"]) and draws[seed][:5] == sets["original"]
        assert all(p in sets["original"] for p in draws[seed]) and shares["volume_matched"][seed]["share"] == 0.5
    unbalanced = assemble(originals, length_trees(), 2, [0], fits, 0.0, False, 0)
    assert sets["test"] == unbalanced[0]["test"]  # held out: untouched


def test_balancing_counts_only_the_pairs_that_will_train():
    """A pair training drops (over train.config.max_length) is no help to the balance: it is left out before."""
    originals = [sided(f"o{i}", s) for i, s in enumerate([1, 1, -1, -1])]
    too_long = originals[2]["id"]
    outcome = lambda pair: "dropped" if pair["id"] == too_long else "fit"  # noqa: E731
    sets, draws, counts = assemble(originals, length_trees(), 2, [0], outcome, 0.0, length_balance=True,
                                   balance_seed=0)
    assert length_share(sets["original"]) == {"pairs": 2, "longer": 1, "shorter": 1, "equal": 0, "share": 0.5}
    assert too_long not in {p["id"] for p in sets["original"]}


def test_without_balance_the_sets_are_as_before_and_the_summary_has_the_shares():
    originals = [sided(f"o{i}", s) for i, s in enumerate([1, 1, 1, -1])]
    sets, draws, counts = assemble(originals, length_trees(), 2, [0], fits, 0.0, False, 0)
    assert sets["original"] == originals and len(sets["train"]) == 4 and len(draws[0]) == 8
    shares = counts["chosen_longer"]
    assert shares["balanced"] is False and shares["original"]["before"] == shares["original"]["after"]
    assert shares["original"]["after"]["share"] == 0.75 and shares["train"]["after"]["share"] == 0.75


def test_the_control_arms_start_from_the_balanced_decontaminated_originals_and_balance_what_they_add(tiny_model):
    """With length_balance and decontaminate's list, every arm starts from the original pairs every variant trains
    on, adds balanced pairs, and holds nothing decontaminate listed: no original, reserve pair or tree of it."""
    from music_rm.method.contrast import contrast

    originals = [sided(f"o{i}", s) for i, s in enumerate([1, 1, 1, 1, -1, -1, 0])]
    reserve = [sided(f"r{i}", s) for i, s in enumerate([1, 1, 1, -1, -1, -1])]
    left_out = {"original_pairs": ["o0", "r0"], "music_trees": ["t0"]}
    sets, draws, counts, arms = contrast(originals, length_trees(), 2, [0, 1], str(tiny_model), 512,
                                         "truncate_oldest", 0.0, True, 5, left_out, reserve, 0.0)
    base = sets["original"]
    assert length_share(base)["share"] == 0.5 and "o0" not in {p["id"] for p in base}
    drawn = {arm: rows if isinstance(rows, dict) else {None: rows} for arm, rows in arms.items()}
    for arm, by_seed in drawn.items():
        for rows in by_seed.values():
            assert rows[:len(base)] == base, arm
            ids = {p["id"] for p in rows}
            assert not ids & {"o0", "r0"} and not any(i.startswith("t0-") for i in ids), arm
            if arm != "diversity_matched":  # drawn at random from the balanced reserve: balanced in expectation
                assert length_share(rows[len(base):])["share"] in (0.5, None), arm
    assert len(sets["train"]) == 2  # t1, t2 longer, t3 shorter: one of the longer two kept
    assert counts["arms"]["diversity_matched"]["added"] == 2 and counts["arms"]["diversity_matched"]["repeats"] == 0
    assert counts["arms"]["diversity_matched"]["reserve_left_out"] == 1
    assert counts["arms"]["diversity_matched"]["reserve"] == 5 and counts["arms"]["diversity_matched"]["reserve_fit"] == 4
    assert counts["arms"]["offtopic"]["added"] > 0 and counts["arms"]["related"]["added"] == 2
