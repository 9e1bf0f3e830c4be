from pathlib import Path

import pytest

from music_rm.data.chat_template import load_tokenizer
from music_rm.method.contrast import ContrastError, assemble, contrast, cut, length_outcome, pairs_from_trees
from music_rm.method.simulate import relatedness


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


def original_pair(pid, chosen="hello", rejected="go away"):
    return {"id": pid, "source": "x", "chosen": [m("user", f"hi {pid}"), m("assistant", chosen)],
            "rejected": [m("user", f"hi {pid}"), m("assistant", rejected)]}


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
    original = [original_pair("o1"), original_pair("o2")]
    trees = [tree("a", "train"), tree("b", "test"), tree("c", "train")]
    sets, _, _ = assemble(original, trees, 2, [0], fits, 0.0, False, 0)
    assert [p["seed_id"] for p in sets["train"]] == ["seed-a", "seed-c"]
    assert [p["seed_id"] for p in sets["test"]] == ["seed-b"]
    assert sets["train_with_original"] == original + sets["train"]
    # the held-out pairs at every K, cut here once: the trained K's are the test set itself
    assert [(p["seed_id"], p["k"]) for p in sets["test_by_k"]] == [("seed-b", 1), ("seed-b", 2), ("seed-b", 3)]
    assert [p for p in sets["test_by_k"] if p["k"] == 2] == sets["test"]


def test_volume_matched_control_has_the_music_set_size_and_only_original_pairs():
    originals = [original_pair(f"o{i}") for i in range(5)]
    trees = [tree(f"t{i}", "train") for i in range(3)] + [tree("x", "test")]
    sets, draws, _ = assemble(originals, trees, 2, [0, 1], fits, 0.0, False, 0)
    control = draws[0]
    assert len(control) == len(draws[1]) == len(sets["train_with_original"]) == 8
    assert control[:5] == originals and all(p in originals for p in control)
    # a seed's draw does not depend on the others
    assert assemble(originals, trees, 2, [3, 0], fits, 0.0, False, 0)[1][0] == control
    assert [p["id"] for p in draws[1]] != [p["id"] for p in control]  # one draw per training seed


NOTHING_LEFT_OUT = {"original_pairs": [], "music_trees": []}  # decontaminate's dropped.json with drop off


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
    sets, draws, counts, _ = contrast(short + [too_long], trees, 3, [0], str(tiny_model), 80, "truncate_oldest", 0.0,
                                      False, 0, NOTHING_LEFT_OUT, [], 0.0)
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


REAL_TREES = Path(__file__).resolve().parents[1] / "fixtures" / "trees.jsonl"  # 8 train + 2 test trees of the default
# pipeline's simulate stage (the embedded SmolLM2 on the embedded seed prompts, params.yaml's simulate section)


def test_min_relatedness_keeps_the_train_trees_whose_hidden_instructions_stay_related():
    """Real trees: a tree is kept when each hidden instruction of its K = 2 pair shares at least the given share of
    content words with the user message it replaced; the held-out trees are all kept."""
    from music_rm.core.io import read_jsonl
    from music_rm.method.contrast import tree_relatedness
    from music_rm.method.simulate import content_words

    trees = read_jsonl(REAL_TREES)
    original = [original_pair(f"o{i}") for i in range(3)]
    first = trees[0]["hidden"][0]  # by hand: the Jaccard share of content words
    a, b = content_words(first["original"]), content_words(first["rewritten"])
    assert tree_relatedness({"hidden": [first]}, 1) == round(len(a & b) / len(a | b), 6) > 0
    everything, _, counts = assemble(original, trees, 2, [0], fits, 0.0, False, 0)
    assert counts["relatedness"] == {"min": 0.0, "train_trees": 8, "kept": 8, "dropped": 0}
    related = {t["id"] for t in trees if t["split"] == "train"
               and all(relatedness(h["original"], h["rewritten"]) >= 0.25 for h in t["hidden"] if h["turn"] <= 2)}
    assert 0 < len(related) < 8
    sets, draws, counts = assemble(original, trees, 2, [0], fits, 0.25, False, 0)
    assert counts["relatedness"] == {"min": 0.25, "train_trees": 8, "kept": len(related), "dropped": 8 - len(related)}
    assert {p["id"].removesuffix("-k2") for p in sets["train"]} == related
    assert counts["music_by_k"][2]["pairs"] == len(related)
    assert len(draws[0]) == len(sets["train_with_original"]) == 3 + len(related)
    assert sets["test_by_k"] == everything["test_by_k"] and len(sets["test_by_k"]) == 2 * 3  # held out: all kept
    # the third turn's hidden instruction does not count at K = 2
    unrelated_third = [t for t in trees if t["id"] in related and tree_relatedness(t, 3) < 0.25]
    assert unrelated_third


def test_the_contrast_stage_counts_the_trees_the_relatedness_filter_keeps(tiny_model, tmp_path):
    import json

    from tests.conftest import repo_params, run_stage

    original = [original_pair(f"o{i}") for i in range(3)]
    (tmp_path / "original.jsonl").write_text("".join(json.dumps(p) + "\n" for p in original))
    # the reserve's one pair is on decontaminate's list: the diversity-matched arm has no reserve left
    (tmp_path / "dropped.json").write_text(json.dumps({**NOTHING_LEFT_OUT, "original_pairs": ["r0"]}))
    (tmp_path / "reserve.jsonl").write_text(json.dumps(original_pair("r0")) + "\n")
    params = repo_params(contrast={"min_relatedness": 0.25})
    result = run_stage("contrast.py", "--trees", str(REAL_TREES), "--original", str(tmp_path / "original.jsonl"),
                       "--reserve", str(tmp_path / "reserve.jsonl"), "--left-out", str(tmp_path / "dropped.json"),
                       "--model", str(tiny_model),
                       "--out", str(tmp_path / "out"), tmp_path=tmp_path, params=params)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    kept = summary["relatedness"]
    assert kept["train_trees"] == 8 and 0 < kept["kept"] < 8 and kept["kept"] + kept["dropped"] == 8
    assert summary["pairs_train"] == kept["kept"] and summary["pairs_test"] == 2
    assert f"relatedness >= 0.25: {kept['kept']} kept, {kept['dropped']} dropped, of 8" in result.stdout
    # the control arms, each counted in the summary and written where a variant can name it (paths.CONTROL_ARMS)
    from music_rm.core.io import read_jsonl
    arms = summary["arms"]
    music = summary["pairs_train_with_original"]
    assert len(read_jsonl(tmp_path / "out" / "offtopic" / "seed-0.jsonl")) == arms["offtopic"]["pairs"] == music
    assert len(read_jsonl(tmp_path / "out" / "related.jsonl")) == arms["related"]["pairs"] <= music
    assert arms["style"]["pairs"] == 3 and arms["style"]["trees_left_out"] == kept["kept"]  # no resampled branch
    assert arms["diversity_matched"]["repeats"] == arms["diversity_matched"]["added"] > 0  # an empty reserve
    assert f"contrast: arm offtopic: {music} train pairs, {music} fit ({music - 3} MUSIC pairs" in result.stdout
    assert f"contrast: arm style: 3 train pairs, 3 fit (0 resampled; {kept['kept']} trees left out" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines() if line.startswith("contrast: arm")) <= 120
    assert "repeats: the reserve is short" in result.stdout
    assert arms["diversity_matched"]["reserve"] == 0 and arms["diversity_matched"]["reserve_left_out"] == 1
    assert "contrast: left out of the reserve (the diversity-matched arm's) by decontaminate.drop: 1 pairs" \
        in result.stdout and "left out as overlapping" not in result.stdout


def arm_trees():
    """Four train trees (the first three with a resampled branch, the first one's hidden instruction related to the
    message it replaced) and a held-out one, each grown from an original pair with the same prompt."""
    trees = [tree(f"t{i}", "train") for i in range(4)] + [tree("x", "test")]
    for i, t in enumerate(trees):
        t["chosen"] = [dict(msg, content=f"{msg['content']} of t{i}") if msg["role"] == "assistant" and j >= 2 else msg
                       for j, msg in enumerate(t["chosen"])]
        t["hidden"] = [{"turn": 1, "original": "cook pasta dinner",
                        "rewritten": "cook pasta lunch" if i == 0 else "paint fence"}]
    for t in trees[:3]:
        t["resampled"] = [dict(msg, content=msg["content"] + " again") if msg["role"] == "assistant" and j >= 2
                          else msg for j, msg in enumerate(t["chosen"])]
    originals = [{"id": t["seed_id"], "source": "x", "chosen": t["chosen"][:3] + [m("assistant", f"good {t['id']}")],
                  "rejected": t["chosen"][:3] + [m("assistant", f"bad {t['id']}")]} for t in trees[:4]]
    return trees, originals


def answers(messages, n=2):
    return [x["content"] for x in messages[n:] if x["role"] == "assistant"]


def test_control_arms_offtopic_style_diversity_matched_and_related():
    from music_rm.method.contrast import control_arms

    trees, originals = arm_trees()
    reserve = [original_pair(f"r{i}") for i in range(3)]
    arms, counts = control_arms(originals, originals, reserve, trees, 2, [0, 1], fits, 0.4, None)
    music = pairs_from_trees(trees[:4], 2)
    by_id = {t["id"]: t for t in trees}
    # off-topic: the MUSIC pair, its rejected side answered by another train tree's chosen branch, turn by turn
    for seed in (0, 1):
        rows = arms["offtopic"][seed]
        assert rows[:4] == originals and len(rows) == 8
        for pair, own in zip(rows[4:], music):
            assert pair["chosen"] == own["chosen"] and pair["donor"] != own["seed_id"].removeprefix("seed-")
            assert answers(pair["rejected"]) == answers(by_id[pair["donor"]]["chosen"])[:2]
            assert [x for x in pair["rejected"] if x["role"] == "user"] == \
                [x for x in own["rejected"] if x["role"] == "user"]
    assert [p["donor"] for p in arms["offtopic"][0][4:]] != [p["donor"] for p in arms["offtopic"][1][4:]]
    # style: the original pair's two answers at turn 1, then the same user message answered by the chosen and the
    # resampled branch; the tree without a resampled branch is left out
    style = arms["style"][4:]
    assert [p["seed_id"] for p in style] == ["seed-t0", "seed-t1", "seed-t2"]
    assert answers(style[0]["chosen"]) == ["good t0", "a2 of t0"]
    assert answers(style[0]["rejected"]) == ["bad t0", "a2 of t0 again"]
    assert style[0]["chosen"][4] == style[0]["rejected"][4] == m("user", "u2")
    # chosen longer: the 4 originals ("good tN" against "bad tN"), not the 3 style pairs (the resampled answers
    # are longer)
    assert counts["style"] == {"pairs": 7, "added": 3, "fit": 7, "chosen_longer": round(4 / 7, 6),
                               "trees_left_out": 1}
    # diversity-matched: distinct reserve pairs first; the reserve holds 3 of the 4 needed, a repeat fills the rest
    rows = arms["diversity_matched"][0]
    assert rows[:4] == originals and len(rows) == 8
    assert sorted(p["id"] for p in rows[4:7]) == ["r0", "r1", "r2"] and rows[7] in originals + reserve
    assert counts["diversity_matched"] == {"pairs": 8, "added": 4, "fit": 8, "reserve": 3, "reserve_fit": 3,
                                           "repeats": 1, "chosen_longer": (4 + (rows[7] in originals)) / 8}
    many = [original_pair(f"r{i}") for i in range(10)]
    _, enough = control_arms(originals, originals, many, trees, 2, [0], fits, 0.4, None)
    assert enough["diversity_matched"]["repeats"] == 0
    # related-only: the MUSIC pairs of the trees whose hidden instructions keep relatedness >= 0.4
    assert [p["id"] for p in arms["related"][4:]] == ["t0-k2"]
    assert counts["related"] == {"pairs": 5, "added": 1, "fit": 5, "chosen_longer": 1.0, "min_relatedness": 0.4,
                                 "trees": 1, "of": 4}


def test_the_arms_run_from_params_through_simulate_and_contrast(tiny_model, tmp_path):
    """The stages with the arms' params: fetch's split with a reserve, simulate grows the train trees with
    simulate.train_seed and their resampled branches, contrast builds every arm from them and counts it."""
    import json

    from music_rm.core.io import read_jsonl, write_jsonl
    from music_rm.core.params import validate
    from music_rm.data.sources import fetch_with_reserve
    from tests.conftest import repo_params, run_stage

    tokens = {"max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0}
    params = repo_params(fetch={"reserve_fraction": 0.5},
                         simulate={"turns": 2, "train_seed": 5, "resample": True, "train_prompts": 4, "test_prompts": 1,
                                   "dtype": "float32", "cache": False, "max_retries": 5,
                                   "assistant": tokens, "user": tokens, "rewriter": tokens},
                         contrast={"turns": 2})
    data, trees, out = tmp_path / "fetch", tmp_path / "simulate", tmp_path / "contrast"
    train, reserve, test, _ = fetch_with_reserve(validate(params, "params.yaml").fetch)
    for name, rows in (("train", train), ("reserve", reserve), ("test", test)):
        write_jsonl(data / f"{name}.jsonl", rows)
    steps = [("simulate.py", "--data", str(data), "--model", str(tiny_model), "--out", str(trees)),
             ("contrast.py", "--trees", str(trees / "trees.jsonl"), "--original", str(data / "train.jsonl"),
              "--reserve", str(data / "reserve.jsonl"), "--left-out", str(tmp_path / "dropped.json"),
              "--model", str(tiny_model), "--out", str(out))]
    (tmp_path / "dropped.json").write_text(json.dumps(NOTHING_LEFT_OUT))
    printed = ""
    for step in steps:
        result = run_stage(*step, tmp_path=tmp_path, params=params)
        assert result.returncode == 0, result.stderr[-3000:]
        printed += result.stdout
    assert reserve and not {r["id"] for r in reserve} & {r["id"] for r in train}
    simulated = json.loads((trees / "summary.json").read_text())
    assert simulated["simulation_seeds"] == {"train": 5, "test": 0}
    grown = read_jsonl(trees / "trees.jsonl")
    assert simulated["resampled"] == sum("resampled" in t for t in grown) > 0
    assert all("resampled" not in t for t in grown if t["split"] == "test")
    arms = json.loads((out / "summary.json").read_text())["arms"]
    music = json.loads((out / "summary.json").read_text())["pairs_train_with_original"]
    assert arms["offtopic"]["pairs"] == music == len(read_jsonl(out / "offtopic" / "seed-0.jsonl"))
    assert arms["style"]["added"] == simulated["resampled"] == len(read_jsonl(out / "style.jsonl")) - len(train)
    assert arms["diversity_matched"]["reserve"] == len(reserve) and arms["diversity_matched"]["pairs"] == music
    for arm in ("offtopic", "style", "diversity_matched", "related"):
        assert f"contrast: arm {arm}: {arms[arm]['pairs']} train pairs" in printed
