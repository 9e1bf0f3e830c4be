"""RewardBench 2, RM-Bench and RMB: loading each from files in its exact upstream schema (written here:
tests/benchmark_files.py), bad rows in one line or counted, scoring as upstream computes it (against upstream's own
functions where the rewardbench package is installed, by hand from upstream's definitions otherwise), the records,
and the reward_bench stage on each with a tiny random reward model."""
import importlib.util
import json
import sys
import types

import numpy as np
import pytest
import yaml

from music_rm.core.errors import InputError
from music_rm.core.params import validate
from music_rm.evaluation import reward_bench_2, rm_bench, rmb
from music_rm.evaluation.benchmarks import BENCHMARKS
from music_rm.evaluation.candidates import Item, choice_records, length_rewards, pair_records
from music_rm.evaluation.estimates import by_suite, suite_result
from music_rm.evaluation.records import read_records, rounded
from tests import benchmark_files
from tests.conftest import REPO, models_folder, run_stage


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def point(block: dict) -> dict:
    """{variant: {score: estimate}} of an `upstream` block."""
    return {v: {k: s["estimate"] for k, s in named.items()} for v, named in block["models"].items()}


# --- RewardBench 2 ---------------------------------------------------------------------------------------------------

def test_reward_bench_2_loads_the_same_items_from_a_file_and_a_dataset_folder(tmp_path):
    folder = benchmark_files.write_all(tmp_path)["reward_bench_2"]
    from_file, skipped = reward_bench_2.load_local(str(jsonl(tmp_path / "rb2.jsonl",
                                                             benchmark_files.reward_bench_2_rows())), "fail")
    from_hub, _, resolved = reward_bench_2.load_hub(str(folder), "main", "test", "fail", "rb2")
    assert from_file == from_hub and not skipped and resolved == f"local:{folder}"
    ties = [i for i in from_file if i.subset == "Ties"]
    assert [(i.source_id, i.correct, len(i.answers), i.cluster) for i in ties] == [
        ("ref:1", 1, 4, "prompt:1"), ("tied:1", 3, 6, "prompt:1"), ("ref:2", 1, 4, "prompt:2"),
        ("tied:2", 3, 6, "prompt:2")]
    first = from_file[0]
    assert first.context == ({"role": "user", "content": "Question 0 on factuality?"},) and first.correct == 1
    assert len(first.answers) == 4  # chosen, then the three rejected


@pytest.mark.parametrize("change, field, message", [
    (lambda r: r.update(rejected=r["rejected"][:2], total_completions=3), "rejected", "expected 3 answers, got 2"),
    (lambda r: r.update(num_correct=2), "num_correct", "2, but the row has 1 chosen answers"),
    (lambda r: r.update(total_completions=5), "total_completions", "5, but the row has 4 answers"),
    (lambda r: r["rejected"].__setitem__(1, "  "), "rejected[1]", "empty content"),
    (lambda r: r.pop("prompt"), "prompt", "missing"),
])
def test_a_reward_bench_2_row_that_breaks_the_schema_is_one_line(tmp_path, change, field, message):
    rows = benchmark_files.reward_bench_2_rows()
    change(rows[3])
    path = jsonl(tmp_path / "rb2.jsonl", rows)
    with pytest.raises(InputError) as e:
        reward_bench_2.load_local(str(path), "fail")
    assert (e.value.file, e.value.row, e.value.field) == (str(path), 4, field) and message in e.value.reason
    items, skipped = reward_bench_2.load_local(str(path), "skip")
    assert len(items) == len(rows) - 1 and sum(skipped.values()) == 1


def test_a_ties_row_needs_its_correct_set_and_a_ref_or_tied_id(tmp_path):
    rows = benchmark_files.reward_bench_2_rows()
    tied = next(i for i, r in enumerate(rows) if r["id"] == "tied:1")
    rows[tied].update(chosen=rows[tied]["chosen"][:1], num_correct=1, total_completions=4)
    path = jsonl(tmp_path / "rb2.jsonl", rows)
    with pytest.raises(InputError, match=r"row \d+: field 'chosen': a tied row needs its set of right answers"):
        reward_bench_2.load_local(str(path), "fail")
    rows = benchmark_files.reward_bench_2_rows()
    rows[tied]["id"] = "1"
    with pytest.raises(InputError, match="a Ties row's id is ref:<n> or tied:<n>, got '1'"):
        reward_bench_2.load_local(str(jsonl(tmp_path / "rb2.jsonl", rows)), "fail")
    rows = benchmark_files.reward_bench_2_rows()
    rows[tied].update(chosen=[], num_correct=0, total_completions=3)
    _, skipped = reward_bench_2.load_local(str(jsonl(tmp_path / "rb2.jsonl", rows)), "skip")
    assert skipped == {"chosen: no answers": 1}


def test_best_of_4_gives_the_chosen_answer_its_share_of_a_tied_top_score():
    assert reward_bench_2.best_of_result([2.0, 1.0, 0.5, 1.9]) == 1.0
    assert reward_bench_2.best_of_result([2.0, 2.0, 0.5, 1.9]) == 0.5  # upstream: 1 / (scores == max).sum()
    assert reward_bench_2.best_of_result([1.0, 2.0, 2.0, 0.0]) == 0.0


def test_the_ties_score_by_hand_from_upstreams_definition():
    # prompt 1: ref right (margin 1), tied: right answers 5, 4 (spread 1) above wrong 2 (margin 2): every term counts
    # prompt 2: ref wrong (margin -1), tied accurate with margin 0.5 below its spread 2
    prompts = [{"ref": reward_bench_2.ties_stats([3.0, 2.0, 1.0], 1), "tied": reward_bench_2.ties_stats([5.0, 4.0, 2.0], 2)},
               {"ref": reward_bench_2.ties_stats([1.0, 2.0], 1), "tied": reward_bench_2.ties_stats([6.0, 3.0, 2.5], 2)}]
    # accuracy: tied 2/2, ref 1/2; preferred: [2 > 1, 0.5 > 3] = 1/2; hard: [min(1, 2) > 1, min(-1, .5) > 3] = 0/2
    # margin term: mean(tanh(1/1 - 1), tanh(-1/3 - 1))
    expected = 0.3 * 1 + 0.3 * 0.5 + 0.2 * 0.5 + 0.2 * 0 + 0.01 * np.mean([np.tanh(0.0), np.tanh(-1 / 3 - 1)])
    assert reward_bench_2.ties_score(prompts) == pytest.approx(expected, abs=1e-12)
    assert reward_bench_2.ties_score([{"ref": prompts[0]["ref"]}]) is None  # no prompt with both rows


UPSTREAM = REPO / ".venv" / "upstream"  # rewardbench 0.1.4 and fschat, installed there by `make .venv/.test-deps`


def test_a_tied_row_whose_right_answers_score_the_same_counts_as_upstream_main_counts_it():
    # upstream main (05a9005): tanh(min margin / 0 - 1) is tanh(inf) = 1, kept in the margin term's mean; PyPI
    # rewardbench 0.1.4 leaves that prompt out of the mean instead
    prompts = [{"ref": reward_bench_2.ties_stats([2.0, 1.0], 1), "tied": reward_bench_2.ties_stats([3.0, 3.0, 1.0], 2)}]
    assert reward_bench_2.ties_score(prompts) == pytest.approx(0.3 + 0.3 + 0.2 + 0.2 + 0.01 * 1.0, abs=1e-12)


def upstream_rewardbench(monkeypatch):
    """rewardbench's own scoring module (PyPI rewardbench 0.1.4, rewardbench/utils.py), or a skip where it is not
    installed. Importing the package runs its __init__, which imports every model class it supports, and some of those
    import names transformers 5 removed (models/beaver.py: modeling_llama._CONFIG_FOR_DOC): so utils.py is loaded on
    its own, under a stand-in `rewardbench.models` that holds the one name utils.py imports from it
    (REWARD_MODEL_CONFIG, which no scoring function reads)."""
    if not (UPSTREAM / "rewardbench" / "utils.py").is_file() or not (UPSTREAM / "fastchat").is_dir():
        pytest.skip(f"rewardbench (PyPI) is not installed in {UPSTREAM}: `make .venv/.test-deps` installs it")
    monkeypatch.syspath_prepend(str(UPSTREAM))  # fastchat, which utils.py imports
    package = types.ModuleType("rewardbench")
    package.__path__ = [str(UPSTREAM / "rewardbench")]
    models = types.ModuleType("rewardbench.models")
    models.REWARD_MODEL_CONFIG = {}
    monkeypatch.setitem(sys.modules, "rewardbench", package)
    monkeypatch.setitem(sys.modules, "rewardbench.models", models)
    spec = importlib.util.spec_from_file_location("rewardbench.utils", UPSTREAM / "rewardbench" / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "rewardbench.utils", utils)
    spec.loader.exec_module(utils)
    return utils


def upstream_subset_scores(utils, items, rewards) -> dict:
    """scripts/run_v2.py's per-subset scores, through rewardbench's own functions, of one model's rewards."""
    from datasets import Dataset

    rows = [{"text": f"{item.source_id}/{k}", "scores": r, "subset": item.subset, "id": item.source_id}
            for item, rs in zip(items, rewards) for k, r in enumerate(rs)]
    rerolled = utils.reroll_and_score_dataset(Dataset.from_list(rows), [len(i.answers) for i in items],
                                              cols_to_combine=["text", "scores"])
    rerolled = rerolled.add_column("num_correct", [i.correct for i in items])
    out = {}
    for subset in sorted({i.subset for i in items}):
        part = rerolled.filter(lambda row: row["subset"] == subset)
        out[subset] = (utils.process_single_model(part)[1] if subset == "Ties"
                       else sum(part["results"]) / len(part["results"]))
    return out


def test_reward_bench_2_scores_match_upstreams_own_functions(monkeypatch, tmp_path):
    utils = upstream_rewardbench(monkeypatch)
    items, _ = reward_bench_2.load_local(str(jsonl(tmp_path / "rb2.jsonl", benchmark_files.reward_bench_2_rows())),
                                         "fail")
    rng = np.random.default_rng(0)
    for trial in range(5):
        # rewards as the stage has them (rounded to 6 decimals); trial 0 with many exact ties (a coarse model)
        scale = 1 if trial == 0 else 1e6
        rewards = [[rounded(round(float(x) * scale) / scale) for x in rng.normal(size=len(i.answers))] for i in items]
        for item, r in zip(items, rewards):  # where 0.1.4 and upstream main differ (below): not a shared case
            if item.source_id.startswith("tied") and len(set(r[:item.correct])) == 1:
                r[0] += 1.0
        ours = point(reward_bench_2.scores(items, {"m": rewards}, ["m"], [], resamples=2, seed=0))["m"]
        theirs = upstream_subset_scores(utils, items, rewards)
        assert {s: ours[s] for s in theirs} == pytest.approx(theirs, abs=1e-6)
        assert ours["score"] == pytest.approx(np.mean(list(theirs.values())), abs=1e-6)  # the leaderboard: the mean


def test_reward_bench_2_records_and_the_length_references(tmp_path):
    items, _ = reward_bench_2.load_local(str(jsonl(tmp_path / "rb2.jsonl", benchmark_files.reward_bench_2_rows())),
                                         "fail")
    rewards = {"m": [[float(k == 0) for k in range(len(i.answers))] for i in items]}  # the chosen answer wins alone
    rows = reward_bench_2.records(items, rewards, "rb2", 3)
    suites = by_suite(rows)
    focus = suites["reward_bench_2/rb2/Focus"]
    assert {r.variant for r in focus} == {"m", "longest_answer", "shortest_answer"}
    assert {r.seed for r in focus if r.variant == "m"} == {3} and all(r.margin == 1.0 for r in focus if r.variant == "m")
    lengths = length_rewards(items)["longest_answer"]
    first = items[[i.subset for i in items].index("Focus")]
    record = next(r for r in focus if r.item == first.source_id and r.variant == "longest_answer")
    assert record.length == len(first.answers[0]) - max(map(len, first.answers[1:])) == record.margin
    pairs = suites["reward_bench_2/rb2/Focus/pairs"]
    assert len([r for r in pairs if r.variant == "m"]) == 2 * 3 and {r.cluster for r in pairs} == {"4", "9"}
    ties = suites["reward_bench_2/rb2/Ties"]
    assert {r.cluster for r in ties} == {"prompt:1", "prompt:2"}
    assert len([r for r in suites["reward_bench_2/rb2/Ties/pairs"] if r.variant == "m"]) == 2 * (1 * 3 + 3 * 3)
    assert lengths  # every item has its pickers' rewards
    up = point(reward_bench_2.scores(items, rewards, ["m"], [], resamples=50, seed=0))
    assert all(up["m"][s] == 1.0 for s in reward_bench_2.SUBSETS if s != "Ties")


# --- RM-Bench --------------------------------------------------------------------------------------------------------

def test_rm_bench_levels_by_hand_from_upstreams_matrix():
    # right answers score 1, 2, 3 (concise → markdown), wrong ones 0.5, 1.5, 2.5: a model that likes style
    cells = rm_bench.matrix([1, 2, 3, 0.5, 1.5, 2.5])
    assert cells.tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert rm_bench.levels(cells) == {"hard": 0.0, "normal": 1.0, "easy": 1.0}  # hard: the upper triangle
    assert rm_bench.matrix([1, 1, 1, 1, 1, 1]).sum() == 0  # an equal reward is not a win upstream
    matrices = {d: np.stack([cells, np.ones((3, 3))]) for d in rm_bench.DOMAINS}
    out = rm_bench.upstream_accuracy(matrices)
    assert out["chat.hard"] == 0.5 and out["chat"] == pytest.approx((0.5 + 1 + 1) / 3) and out["hard"] == 0.5
    assert out["score"] == pytest.approx(np.mean([out[d] for d in rm_bench.DOMAINS]))
    assert "score" not in rm_bench.upstream_accuracy({"chat": matrices["chat"]})  # needs all four domains


def test_rm_bench_loads_its_domains_and_its_records_fill_the_matrix(tmp_path):
    path = benchmark_files.write_all(tmp_path)["rm_bench"] / "total_dataset.json"
    items, _ = rm_bench.load_local(str(path), "fail")
    assert [i.subset for i in items] == ["chat", "code", "math", "safety", "safety"]  # safety-* pooled, as upstream
    rewards = {"m": [[float(len(a)) for a in i.answers] for i in items]}
    rows = rm_bench.records(items, rewards, "rmb", 0)
    hard = by_suite(rows)["rm_bench/rmb/chat/hard"]
    assert sorted(r.item for r in hard if r.variant == "m") == ["0#0>4", "0#0>5", "0#1>5"]
    assert all(r.length == r.margin for r in hard if r.variant == "longer_answer")
    up = point(rm_bench.scores(items, rewards, ["m"], [], resamples=20, seed=0))
    assert up["m"] == up["longer_answer"] and up["m"]["hard"] == 0.0  # lengths grow with style: hard is lost


@pytest.mark.parametrize("change, field, message", [
    (lambda r: r["chosen"].pop(), "chosen", "expected 3 answers, got 2"),
    (lambda r: r["rejected"].__setitem__(2, None), "rejected[2]", "expected a string, got NoneType"),
    (lambda r: r.update(domain="poetry"), "domain", "expected one of chat, code, math"),
])
def test_an_rm_bench_row_with_a_missing_cell_is_one_line(tmp_path, change, field, message):
    rows = benchmark_files.rm_bench_rows()
    change(rows[1])
    path = benchmark_files.write_json(tmp_path / "rm.json", rows)
    with pytest.raises(InputError) as e:
        rm_bench.load_local(str(path), "fail")
    assert (e.value.row, e.value.field) == (2, field) and message in e.value.reason
    assert len(rm_bench.load_local(str(path), "skip")[0]) == len(rows) - 1


# --- RMB -------------------------------------------------------------------------------------------------------------

def test_rmb_keeps_every_turn_and_scores_best_of_n_by_beating_every_loser(tmp_path):
    folder = benchmark_files.write_all(tmp_path)["rmb"]
    items, _ = rmb.load_local(str(folder), "fail")
    assert {rmb.kind_and_goal(i) for i in items} == {(k, g) for k in ("pairwise", "bon") for g in rmb.GOALS}
    multi = next(i for i in items if len(i.context) > 1)
    assert [m["role"] for m in multi.context] == ["user", "assistant", "user"]  # the turns kept, `language` dropped
    assert set(multi.context[0]) == {"role", "content"}
    assert rmb.right([2.0, 1.0, 1.9]) == 1.0 and rmb.right([2.0, 2.0, 1.0]) == 0.0 and rmb.right([1, 3, 0]) == 0.0
    rewards = {"m": [[1.0] + [0.0] * (len(i.answers) - 1) if i.source_id != "201" else [0.0, 1.0] + [0.0] * (
        len(i.answers) - 2) for i in items]}
    up = point(rmb.scores(items, rewards, ["m"], [], resamples=20, seed=0))["m"]
    assert up["Helpfulness.pairwise"] == up["Harmlessness.pairwise"] == up["Harmlessness.bon"] == 1.0
    assert up["Helpfulness.bon"] == pytest.approx(2 / 3) and up["score"] == pytest.approx((3 + 2 / 3) / 4)
    rows = rmb.records(items, rewards, "rmb", 0)
    suites = by_suite(rows)
    assert set(suites) == {f"rmb/rmb/{k}/{g}" for k in ("pairwise", "bon") for g in rmb.GOALS} | {
        f"rmb/rmb/bon/{g}/pairs" for g in rmb.GOALS}
    assert {r.variant for r in suites["rmb/rmb/bon/Helpfulness"]} == {"m", "longest_answer", "shortest_answer"}
    assert {r.variant for r in suites["rmb/rmb/pairwise/Helpfulness"]} == {"m", "longer_answer"}


@pytest.mark.parametrize("change, field, message", [
    (lambda r: r["conversation_input"].append({"role": "assistant", "content": "x"}), "conversation_input",
     "must end with a user message"),
    (lambda r: r.update(category_path="BoN_set/Helpfulness/Chat"), "category_path", "expected Pairwise_set/"),
    (lambda r: r["reject"].pop("answer"), "reject.answer", "missing"),
    (lambda r: r["conversation_input"][0].update(role="robot"), "conversation_input[0].role", "unknown role"),
])
def test_an_rmb_row_that_breaks_the_schema_is_one_line(tmp_path, change, field, message):
    name, rows = next(iter(benchmark_files.rmb_files().items()))
    change(rows[1])
    path = benchmark_files.write_json(tmp_path / "RMB_dataset" / name, rows)
    with pytest.raises(InputError) as e:
        rmb.load_local(str(tmp_path / "RMB_dataset"), "fail")
    assert (e.value.file, e.value.row, e.value.field) == (str(path), 2, field) and message in e.value.reason


def test_records_of_an_item_are_clustered_and_carry_the_length_judged():
    item = Item("q", "s", ({"role": "user", "content": "Q?"},), ("right one", "wrong", "a longer wrong one"), 1, "c")
    pairs = pair_records([item], {"m": [[1.0, 0.5, 2.0]]}, lambda it, i, j: "p", 0)
    assert [(r.item, r.margin, r.length, r.cluster) for r in pairs if r.variant == "m"] == [
        ("q#0>1", 0.5, 4, "c"), ("q#0>2", -1.0, -9, "c")]
    choice = choice_records([item], {"m": [[1.0, 0.5, 2.0]]}, lambda it: "c", 0)
    assert {r.variant: (r.margin, r.length) for r in choice} == {
        "m": (-1.0, -9), "longest_answer": (-9.0, -9), "shortest_answer": (-4.0, -9)}  # 5 chars beat 9


# --- the stage -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, kind, split", [("reward_bench_2", "hf", "test"), ("rm_bench", "hf", "train"),
                                              ("rmb", "file", None)])
def test_the_stage_scores_each_benchmark_as_upstream_and_writes_its_records(tmp_path, tiny_reward_model, report, fmt,
                                                                           kind, split):
    path = str(benchmark_files.write_all(tmp_path / "bench")[fmt])
    source = ({"kind": "file", "path": path, "format": fmt} if kind == "file" else
              {"kind": "hf", "hf_dataset": path, "hf_revision": "main", "hf_split": split, "format": fmt, "path": path})
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["variants"] = {"a": {"pairs": "x"}, "b": {"pairs": "x"}}
    params["eval"]["compare"] = [["a", "b"]]
    params["reward_bench"].update(max_length=256, bootstrap_resamples=100, sources={fmt: source})
    models = models_folder(tmp_path, tiny_reward_model, ["a", "b"])
    result = run_stage("reward_bench.py", "--source", fmt, "--models", str(models), "--out", str(tmp_path / "out"),
                       tmp_path=tmp_path, params=params)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / fmt / "metrics.json").read_text())
    up = point(metrics["upstream"])
    assert up["a"] == up["b"] and "score" in up["a"]  # the same model twice; every section present
    assert metrics["upstream"]["differences"]["a-b"]["score"]["estimate"] == 0.0
    assert metrics["published"]["score"] == {"reward_bench_2": 0.841, "rm_bench": 0.960, "rmb": 0.864}[fmt]
    rows = read_records(tmp_path / "out" / fmt / "records.csv")
    assert all(r.length is not None for r in rows)
    for suite, suite_rows in by_suite(rows).items():  # every accuracy recomputes from the records
        assert suite_result(suite_rows, [["a", "b"]], 100, 0, order=["a", "b", "longer_answer", "longest_answer",
                                                                     "shortest_answer"]).as_dict() == metrics["suites"][suite]
    text = (tmp_path / "out" / fmt / "report.md").read_text()
    assert "published: Skywork-Reward-V2-Llama-3.1-8B (arXiv 2507.01352)" in text and "| a |" in result.stdout
    # the share of the items' conversations (every answer in its context) the models scored shortened
    from music_rm.data.chat_template import load_tokenizer
    from music_rm.data.lengths import token_ids
    items = BENCHMARKS[fmt].load(fmt, validate(params, "params.yaml").reward_bench.sources[fmt], "fail")[0]
    tokenizer = load_tokenizer(str(tiny_reward_model))
    lengths = [len(token_ids(tokenizer, c)) for item in items for c in item.conversations()]
    cut = metrics["truncated"]
    assert cut == {"max_length": 256, "share": round(sum(n > 256 for n in lengths) / len(lengths), 4)}
    line = f"{cut['share']:.0%} of their conversations over max_length 256 (scored shortened)"
    assert f"Items: {line}" in text and f"{metrics['items']} items, {line}" in result.stdout
    report(f"reward_bench@{fmt} ({kind}), tiny random RM, the files of tests/benchmark_files.py:\n"
           + text.split("\n\n", 2)[-1].strip())


def test_the_stage_counts_skipped_rows_under_on_invalid_skip(tmp_path, tiny_reward_model):
    rows = benchmark_files.rm_bench_rows()
    rows[0]["chosen"] = rows[0]["chosen"][:2]
    path = benchmark_files.write_json(tmp_path / "rm.json", rows)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["variants"] = {"a": {"pairs": "x"}}
    params["reward_bench"].update(max_length=128, bootstrap_resamples=20, sources={
        "rm": {"kind": "file", "path": str(path), "format": "rm_bench"}})
    models = models_folder(tmp_path, tiny_reward_model, ["a"])
    args = ("reward_bench.py", "--source", "rm", "--models", str(models), "--out", str(tmp_path / "out"))
    failed = run_stage(*args, tmp_path=tmp_path, params=params)
    assert failed.returncode == 1 and failed.stderr.strip().splitlines() == [
        f"Error: {path}: row 1: field 'chosen': expected 3 answers, got 2"]
    params["reward_bench"]["on_invalid"] = "skip"
    result = run_stage(*args, tmp_path=tmp_path, params=params)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "rm" / "metrics.json").read_text())
    assert metrics["skipped"] == 1 and metrics["skipped_by_reason"] == {"chosen: expected 3 answers, got 2": 1}
    assert metrics["items"] == 4 and "score" not in point(metrics["upstream"])["a"]  # chat was the bad row
    assert "Rows skipped (reward_bench.on_invalid: skip): 1" in (tmp_path / "out" / "rm" / "report.md").read_text()
