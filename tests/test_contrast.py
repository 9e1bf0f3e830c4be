import pytest

from music_rm.data.chat_template import load_tokenizer
from music_rm.method.contrast import ContrastError, assemble, contrast, cut, length_outcome, pairs_from_trees


def m(role, content):
    return {"role": role, "content": content}


def tree(tid, split, turns=3):
    context = [m("user", "earlier"), m("assistant", "earlier answer")]
    chosen, rejected = context + [m("user", "u1")], list(context)
    for t in range(1, turns + 1):
        chosen.append(m("assistant", f"a{t}"))
        rejected += [m("user", "u1" if t == 1 else f"u{t}'"), m("assistant", f"a{t}'")]
        if t < turns:
            chosen.append(m("user", f"u{t + 1}"))
    return {"id": tid, "seed_id": f"seed-{tid}", "split": split, "context": context, "chosen": chosen,
            "rejected": rejected, "hidden": []}


def test_k1_is_the_classic_last_turn_contrast():
    [pair] = pairs_from_trees([tree("t", "train")], 1)
    assert pair["chosen"][:-1] == pair["rejected"][:-1]
    assert (pair["chosen"][-1]["content"], pair["rejected"][-1]["content"]) == ("a1", "a1'")
    assert (pair["k"], pair["seed_id"], pair["split"], pair["source"]) == (1, "seed-t", "train", "music")


def test_k_turns_differ_across_several_turns():
    [pair] = pairs_from_trees([tree("t", "train")], 3)
    n = len(tree("t", "train")["context"])
    assert len(pair["chosen"]) == len(pair["rejected"]) == n + 6
    assert [x["role"] for x in pair["chosen"][n:]] == ["user", "assistant"] * 3
    assert pair["chosen"][-1]["content"] == "a3" and pair["rejected"][-1]["content"] == "a3'"
    assert pair["chosen"][n + 2] != pair["rejected"][n + 2]  # the second user turn differs too


@pytest.mark.parametrize("k", [0, 4, "2"])
def test_k_outside_the_simulated_turns_is_a_clear_error(k):
    with pytest.raises(ContrastError, match=r"contrast.turns must be an integer in 1..3"):
        pairs_from_trees([tree("t", "train")], k)


def test_cut_counts_only_simulated_assistant_turns():
    t = tree("t", "train")
    assert cut(t["chosen"], len(t["context"]), 1)[-1]["content"] == "a1"


def test_assemble_keeps_splits_apart_and_adds_originals():
    original = [{"id": "o1"}, {"id": "o2"}]
    sets, _, _ = assemble(original, [tree("a", "train"), tree("b", "test"), tree("c", "train")], 2, [0], fits)
    assert [p["seed_id"] for p in sets["train"]] == ["seed-a", "seed-c"]
    assert [p["seed_id"] for p in sets["test"]] == ["seed-b"]
    assert sets["train_with_original"] == original + sets["train"]
    # the held-out pairs at every K, cut here once: the trained K's are the test set itself
    assert [(p["seed_id"], p["k"]) for p in sets["test_by_k"]] == [("seed-b", 1), ("seed-b", 2), ("seed-b", 3)]
    assert [p for p in sets["test_by_k"] if p["k"] == 2] == sets["test"]


def test_volume_matched_control_has_the_music_set_size_and_only_original_pairs():
    originals = [{"id": f"o{i}"} for i in range(5)]
    trees = [tree(f"t{i}", "train") for i in range(3)] + [tree("x", "test")]
    sets, draws, _ = assemble(originals, trees, 2, [0, 1], fits)
    control = draws[0]
    assert len(control) == len(draws[1]) == len(sets["train_with_original"]) == 8
    assert control[:5] == originals and all(p in originals for p in control)
    assert assemble(originals, trees, 2, [3, 0], fits)[1][0] == control  # a seed's draw does not depend on the others
    assert [p["id"] for p in draws[1]] != [p["id"] for p in control]  # one draw per training seed


def fits(pair):
    return "fit"


def test_lengths_are_counted_per_k_and_the_control_matches_the_music_pairs_that_train(tiny_model):
    """Training drops a pair whose contrasted turns alone are over train.config.max_length; the control adds as
    many original pairs as there are MUSIC pairs that train, each one that trains itself."""
    long = "a long answer that goes on " * 12
    trees = [tree(f"t{i}", "train") for i in range(4)] + [tree("x", "test")]
    for t in trees[:2]:  # their third assistant turns are long: at K = 3 these two pairs cannot fit
        t["chosen"][-1]["content"] = t["rejected"][-1]["content"] = long
    trees[2]["context"][1]["content"] = long  # a long shared history: truncated, not dropped, at every K
    short = [{"id": f"o{i}", "chosen": [m("user", "hi"), m("assistant", f"hello {i}")],
              "rejected": [m("user", "hi"), m("assistant", "go away")]} for i in range(3)]
    too_long = {"id": "o-long", "chosen": [m("user", "hi"), m("assistant", long)],
                "rejected": [m("user", "hi"), m("assistant", "no")]}
    tokenizer = load_tokenizer(str(tiny_model))
    outcome = length_outcome(tokenizer, 80, "truncate_oldest")
    assert [outcome(p) for p in pairs_from_trees(trees, 3)] == ["dropped", "dropped", "truncated", "fit", "fit"]
    assert [outcome(p) for p in short] == ["fit"] * 3 and outcome(too_long) == "dropped"
    sets, draws, counts = contrast(short + [too_long], trees, 3, [0], str(tiny_model), 80, "truncate_oldest")
    sets["train_volume_matched"] = draws[0]
    assert counts["music_by_k"][3] == {"pairs": 4, "fit": 2, "truncated": 1, "dropped": 2}
    assert counts["music_by_k"][1] == {"pairs": 4, "fit": 4, "truncated": 1, "dropped": 0}
    assert counts["original"] == {"pairs": 4, "fit": 3, "truncated": 0, "dropped": 1}
    control = sets["train_volume_matched"]
    assert len(control) == 4 + 2 and control[:4] == short + [too_long] and all(p in short for p in control[4:])
    # what training will use of each: 3 + 2 pairs in both the MUSIC variant and the control
    from music_rm.data.lengths import tokenize_pairs
    trained = {name: tokenize_pairs(tokenizer, sets[name], 80, "truncate_oldest")[1]["pairs_used"]
               for name in ("train_with_original", "train_volume_matched")}
    assert trained == {"train_with_original": 5, "train_volume_matched": 5}
