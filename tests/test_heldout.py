"""Held-out suites on a tiny random-init reward model: accuracies with bootstrap CIs, every K, plots, report."""
import numpy as np
import pytest

from music_rm.evaluation import plots
from music_rm.evaluation.heldout import (LONGER_ANSWER, comparison_rows, evaluate, music_suites, score_models,
                                         seed_rows, ties_line, write_outputs)
from music_rm.evaluation.records import outcome, read_records
from music_rm.evaluation.report import cell, html_report, markdown_table
from music_rm.evaluation.stats import seeded_bootstrap
from music_rm.method.contrast import assemble
from tests.test_contrast import tree


@pytest.fixture(scope="module")
def rm_dir(tiny_reward_model):
    return tiny_reward_model


def test_one_cell_format():
    assert cell(0.9166667, 0.75, 1.0, 12) == "0.917 [0.75, 1.00] (12)"
    assert cell(0.5, 0.25, 0.75) == "0.500 [0.25, 0.75]"
    assert cell(None, None, None, 0) == "n/a (0)"


def test_every_model_is_scored_at_every_k_with_intervals_plots_and_report(rm_dir, tmp_path):
    trees = [tree(f"t{i}", "test") for i in range(6)] + [tree("x", "train")]
    # contrast cuts every K once; eval reads them
    suites = music_suites(assemble([], trees, 2, [0], lambda pair: "fit", 0.0, False, 0)[0]["test_by_k"])
    assert list(suites) == ["music_k1", "music_k2", "music_k3"]
    assert all(p["k"] == 2 and p["split"] == "test" for p in suites["music_k2"]) and len(suites["music_k2"]) == 6
    margins, rewards = score_models({("a", 0): str(rm_dir), ("b", 0): str(rm_dir), ("b", 1): str(rm_dir)}, suites,
                                    batch_size=4, max_length=None, cpu_dtype="float32", cache=False)
    records, results = evaluate(suites, margins, [["b", "a"]], 200, 0)
    assert len(records) == sum(map(len, suites.values())) * 4  # 3 models and the longer-answer reference
    for variant in ("a", "b"):
        for suite, pairs in suites.items():
            r = results[suite].models[variant]
            assert r.n == len(pairs) and r.ci_low <= r.estimate <= r.ci_high
            assert r.estimate == pytest.approx(np.mean([outcome(m) for m in margins[variant][0][suite]]))
            chosen, rejected = rewards[variant][0][suite]
            assert [c - j for c, j in zip(chosen, rejected)] == margins[variant][0][suite] and len(chosen) == len(pairs)
    a, b = results["music_k1"].models["a"], results["music_k1"].models["b"]
    assert list(b.per_seed) == ["0", "1"] and list(a.per_seed) == ["0"]
    # the same model under two seeds: b's mean is a's, and so is each of its seeds
    assert (b.estimate, b.n, b.mean_margin, b.per_seed["1"]) == (a.estimate, a.n, a.mean_margin, a.per_seed["0"])
    d = results["music_k1"].differences["b-a"]
    assert d.estimate == 0 and (d.seeds, d.seeds_b) == (2, 1)
    # the fixture's rejected answers ("a1'") are one character longer than the chosen ones ("a1")
    longer = results["music_k1"].models[LONGER_ANSWER]
    assert (longer.estimate, longer.ties) == (0.0, 0)
    table = markdown_table(*comparison_rows(results))
    assert table.splitlines()[0] == "| variant (seeds) | music_k1 (n=6) | music_k2 (n=6) | music_k3 (n=6) |"
    assert "| b (2) |" in table and table.splitlines()[-1].startswith("| longer answer wins | 0.000 [0.00, 0.00] |")
    assert ties_line(results) == "Ties (equal margins, each counted one half): none."
    assert seed_rows(results)[0] == ["variant", "seed", "music_k1", "music_k2", "music_k3"]
    curves = {m: [{"step": 1.0, "loss": 0.7, "accuracy": 0.5, "margin": 0.1}] for m in (("a", 0), ("b", 0), ("b", 1))}
    from music_rm.data.chat_template import load_tokenizer
    from music_rm.data.lengths import pairs_truncated, token_ids
    tokenizer, limit = load_tokenizer(str(rm_dir)), 60
    truncated = {suite: pairs_truncated(tokenizer, pairs, limit) for suite, pairs in suites.items()}
    over = {suite: sum(len(token_ids(tokenizer, p[side])) > limit for p in pairs for side in ("chosen", "rejected"))
            for suite, pairs in suites.items()}
    assert {s: t["share"] for s, t in truncated.items()} == {s: round(n / 12, 4) for s, n in over.items()}
    metrics, printed = write_outputs(tmp_path, records, results, margins, rewards, curves, 1, 200, truncated)
    assert metrics["truncated"] == truncated
    assert f"- music_k3: {truncated['music_k3']['share']:.0%} of their conversations over max_length 60 (scored " \
           "shortened)" in printed
    assert read_records(tmp_path / "records.csv") == sorted(records)
    assert metrics["suites"]["music_k2"]["models"]["b"] == results["music_k2"].models["b"].as_dict()
    assert "| b | 1 |" in printed
    assert max(len(line) for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("|")) <= 120
    for name in ("accuracy_by_k.png", "margins.png", "rewards.png", "training_curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    by_k = {v: {s: r.models[v] for s, r in results.items()} for v in ("a", "b")}
    plots.accuracy_by_k(by_k, tmp_path / "k1.png", "K", "t")
    plots.accuracy_by_k(by_k, tmp_path / "k2.png", "K", "t")
    assert (tmp_path / "k1.png").read_bytes() == (tmp_path / "k2.png").read_bytes()
    page = html_report("t", [("table", "table", comparison_rows(results)), ("plot", "png", tmp_path / "k1.png")])
    assert page.count("<tr>") == 4 and "data:image/png;base64," in page and "http" not in page


def test_one_seed_gives_the_plain_and_paired_bootstrap_and_ties_count_one_half():
    """With one seed the interval is the percentile bootstrap over pairs (the pairs taken in the records' order,
    sorted by id: here the file's); a tie (margins equal to 6 decimals) counts one half, in the accuracy and in the
    differences."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=40).tolist(), rng.normal(size=40).tolist()
    suites = {"original": [{"id": f"p{i:02d}", "chosen": [], "rejected": []} for i in range(40)]}
    _, results = evaluate(suites, {"a": {0: {"original": a}}, "b": {0: {"original": b}}}, [["a", "b"]], 300, 7)
    won_a, won_b = [float(x > 0) for x in a], [float(x > 0) for x in b]
    r = results["original"].models["a"]
    plain = seeded_bootstrap(won_a, resamples=300, seed=7)
    assert (r.estimate, r.ci_low, r.ci_high) == (plain["estimate"], plain["ci_low"], plain["ci_high"])
    d = results["original"].differences["a-b"]
    paired = seeded_bootstrap(won_a, won_b, resamples=300, seed=7)
    assert (d.estimate, d.ci_low, d.ci_high, d.n) == (paired["estimate"], paired["ci_low"], paired["ci_high"], 40)
    tied_suites = {"s": [{"id": "x", "chosen": [], "rejected": []}, {"id": "y", "chosen": [], "rejected": []}]}
    _, tied = evaluate(tied_suites, {"a": {0: {"s": [1e-9, 1.0]}}, "b": {0: {"s": [-1.0, -1.0]}}}, [["a", "b"]], 10, 0)
    assert tied["s"].differences["a-b"].estimate == 0.75  # (0.5 + 1) / 2 - 0
    _, results = evaluate(suites, {"a": {0: {"original": [0.0] * 3 + a[3:]}, 1: {"original": a}}}, [], 10, 0)
    assert results["original"].models["a"].ties == 3 and results["original"].models["a"].per_seed["0"]["ties"] == 3
    assert ties_line(results) == ("Ties (equal margins, each counted one half): a seed 0 on original: 3; "
                                  "longer answer wins on original: 40.")  # these pairs have no answers: all of equal length


def test_each_variant_has_one_colour_in_every_plot(monkeypatch, tmp_path):
    """The figures as the plot functions hand them to save_png: every line, bar and error bar of a variant in
    its colour, the same in each plot (and the study's page colours its rows the same way)."""
    from matplotlib.colors import to_hex

    from music_rm.evaluation.estimates import Accuracy
    from music_rm.evaluation.plots import VARIANT_COLORS, variant_color

    figures = []
    monkeypatch.setattr(plots, "save_png", lambda fig, path: figures.append(fig))
    by_suite = {s: Accuracy(0.5, 0.4, 0.6, 3, 3, 1) for s in ("original", "music_k1", "music_k2")}
    variants = ("baseline", "music", "volume_matched", "my_ablation")
    plots.accuracy_by_k({v: by_suite for v in variants}, tmp_path / "k.png", "K", "t")
    plots.training_curves({v: [{"step": 1.0, "loss": 0.7, "accuracy": 0.5, "margin": 0.1}] for v in variants},
                          tmp_path / "c.png")
    plots.margin_histogram({v: {"music_k1": [0.1, -0.2]} for v in variants}, "music_k1", tmp_path / "m.png")
    plots.reward_histogram({v: {"music_k1": ([0.3, 0.1], [0.2, 0.4])} for v in variants}, ["music_k1"], tmp_path / "r.png")
    plots.accuracy_by_k({"baseline": by_suite, "music, trained at K=1": by_suite, "music, trained at K=2": by_suite},
                        tmp_path / "s.png", "K", "t")
    k_plot, curves, margins, rewards, study_plot = figures
    legend = [t.get_text() for t in k_plot.axes[0].get_legend().get_texts()]
    assert [to_hex(h.get_color()) for h in k_plot.axes[0].get_legend().legend_handles] == [variant_color(v) for v in legend]
    for ax in curves.axes:
        assert [to_hex(line.get_color()) for line in ax.get_lines()] == [variant_color(v) for v in variants]
    for fig in (margins, rewards):
        for ax, variant in zip(fig.axes, variants):
            assert to_hex(ax.patches[0].get_facecolor()) == variant_color(variant) and ax.get_title().startswith(variant)
    study_legend = study_plot.axes[0].get_legend()
    assert [to_hex(h.get_color()) for h in study_legend.legend_handles] == [VARIANT_COLORS["baseline"], VARIANT_COLORS["music"],
                                                                            VARIANT_COLORS["music"]]
    assert len({variant_color(v) for v in variants}) == 4 and variant_color("my_ablation") == variant_color("my_ablation")


def test_dvc_plots_of_every_variant_draw_each_in_its_colour():
    """The training curves `dvc plots show` draws together use configs/dvc/variant_lines.json: colour by variant
    (from the file name), dash by revision. Rendered in headless Chromium when this was built (docs/tests.md)."""
    import json

    import yaml

    from music_rm.evaluation.plots import VARIANT_COLORS
    from tests.conftest import REPO

    template = json.loads((REPO / "configs/dvc/variant_lines.json").read_text())
    scale = template["encoding"]["color"]["scale"]
    assert dict(zip(scale["domain"], scale["range"])) == VARIANT_COLORS
    assert template["encoding"]["strokeDash"]["field"] == "rev"
    combined = [p for entry in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"] for p in entry.values()]
    assert combined and all(p["template"] == "configs/dvc/variant_lines.json" and
                            {f.split("/")[2] for f in p["y"]} <= set(VARIANT_COLORS) for p in combined)
