"""Held-out suites on a tiny random-init reward model: accuracies with bootstrap CIs, every K, plots, report;
the shared statistics."""
import numpy as np
import pytest

from music_rm.evaluation.heldout import (accuracy_by_k_plot, comparison_rows, comparison_table, differences,
                                         evaluate, margin_histogram_plot, music_suites, reward_histogram_plot,
                                         score_models, seed_rows, ties_line, training_curves_plot,
                                         write_outputs)
from music_rm.evaluation.records import read_records
from music_rm.evaluation.report import html_report
from music_rm.evaluation.records import outcome
from music_rm.evaluation.stats import accuracy_summary, bootstrap_ci, cell, paired_difference
from music_rm.method.contrast import assemble
from tests.test_contrast import tree


@pytest.fixture(scope="module")
def rm_dir(tiny_reward_model):
    return tiny_reward_model


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_n():
    small, large = [1, 0] * 10, [1, 0] * 1000
    low_s, high_s = bootstrap_ci(small, 2000, 0)
    low_l, high_l = bootstrap_ci(large, 2000, 0)
    assert low_s < 0.5 < high_s and low_l < 0.5 < high_l
    assert high_l - low_l < (high_s - low_s) / 5
    assert bootstrap_ci(small, 2000, 0) == (low_s, high_s)  # seeded
    assert accuracy_summary([], 100, 0) == {"accuracy": None, "ci_low": None, "ci_high": None, "n": 0}
    assert accuracy_summary([1, 1, 1], 100, 0) == {"accuracy": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 3}


def test_paired_difference_keeps_pairs_together():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=400)  # most of the variation is the item's, shared by both measurements
    a, b = shared + 0.1, shared
    paired = paired_difference(a, b, 1000, 0)
    assert paired["difference"] == pytest.approx(0.1) and paired["n"] == 400
    assert paired["ci_high"] - paired["ci_low"] < 1e-9  # the same shift on every item: no uncertainty left
    low, high = bootstrap_ci(a, 1000, 0)
    assert high - low > 0.1  # unpaired, the shared variation would swamp the difference
    noisy = paired_difference(shared + rng.normal(scale=0.5, size=400), shared, 1000, 0)
    assert noisy["ci_low"] < noisy["difference"] < noisy["ci_high"]
    assert paired_difference([], [], 100, 0)["difference"] is None
    with pytest.raises(ValueError, match="differ in size"):
        paired_difference([1, 0], [1], 100, 0)


def test_one_cell_format():
    assert cell(0.9166667, 0.75, 1.0, 12) == "0.917 [0.75, 1.00] (12)"
    assert cell(0.5, 0.25, 0.75) == "0.500 [0.25, 0.75]"
    assert cell(None, None, None, 0) == "n/a (0)"


def test_every_model_is_scored_at_every_k_with_intervals_plots_and_report(rm_dir, tmp_path):
    trees = [tree(f"t{i}", "test") for i in range(6)] + [tree("x", "train")]
    suites = music_suites(assemble([], trees, 2, [0], lambda pair: "fit", 0.0)[0]["test_by_k"])  # contrast cuts every K once; eval reads them
    assert list(suites) == ["music_k1", "music_k2", "music_k3"]
    assert all(p["k"] == 2 and p["split"] == "test" for p in suites["music_k2"]) and len(suites["music_k2"]) == 6
    margins, rewards = score_models({("a", 0): str(rm_dir), ("b", 0): str(rm_dir), ("b", 1): str(rm_dir)}, suites,
                                    batch_size=4, max_length=None, cpu_dtype="float32", cache=False)
    records, results, diffs = evaluate(suites, margins, [["b", "a"]], 200, 0)
    assert len(records) == sum(map(len, suites.values())) * 4  # 3 models and the longer-answer reference
    for variant in ("a", "b"):
        for suite, pairs in suites.items():
            r = results[variant][suite]
            assert r["n"] == len(pairs) and r["ci_low"] <= r["accuracy"] <= r["ci_high"]
            assert r["accuracy"] == pytest.approx(np.mean([outcome(m) for m in margins[variant][0][suite]]))
            chosen, rejected = rewards[variant][0][suite]
            assert [c - j for c, j in zip(chosen, rejected)] == margins[variant][0][suite] and len(chosen) == len(pairs)
    assert list(results["b"]["music_k1"]["seeds"]) == ["0", "1"] and list(results["a"]["music_k1"]["seeds"]) == ["0"]
    # the same model under two seeds: b's mean is a's, and so is each of its seeds
    assert {k: v for k, v in results["a"]["music_k1"].items() if k not in ("seeds", "ci_low", "ci_high")} == \
        {k: v for k, v in results["b"]["music_k1"].items() if k not in ("seeds", "ci_low", "ci_high")}
    assert diffs["b-a"]["music_k1"]["difference"] == 0 and diffs["b-a"]["music_k1"]["seeds_a"] == 2
    # the fixture's rejected answers ("a1'") are one character longer than the chosen ones ("a1")
    assert results["longer_answer"]["music_k1"] == {**results["longer_answer"]["music_k1"], "accuracy": 0.0, "ties": 0}
    table = comparison_table(results)
    assert table.splitlines()[0] == "| variant (seeds) | music_k1 (n=6) | music_k2 (n=6) | music_k3 (n=6) |"
    assert "| b (2) |" in table and table.splitlines()[-1].startswith("| longer answer wins | 0.000 [0.00, 0.00] |")
    assert ties_line(results) == "Ties (equal margins, each counted one half): none."
    assert seed_rows(results)[0] == ["variant", "seed", "music_k1", "music_k2", "music_k3"]
    curves = {m: [{"step": 1.0, "loss": 0.7, "accuracy": 0.5, "margin": 0.1}] for m in (("a", 0), ("b", 0), ("b", 1))}
    metrics, printed = write_outputs(tmp_path, records, results, diffs, margins, rewards, curves, 1, 200)
    assert read_records(tmp_path / "records.csv") == sorted(read_records(tmp_path / "records.csv"),
                                                            key=lambda r: (r["suite"], r["item"], r["variant"], r["seed"]))
    assert len(read_records(tmp_path / "records.csv")) == len(records) and "| b | 1 |" in printed
    assert max(len(line) for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("|")) <= 120
    accuracy_by_k_plot(results, tmp_path / "k.png")
    margin_histogram_plot({v: by_seed[0] for v, by_seed in margins.items()}, "music_k1", tmp_path / "m.png")
    reward_histogram_plot({v: by_seed[0] for v, by_seed in rewards.items()}, ["music_k1", "music_k2"], tmp_path / "r.png")
    for name in ("k.png", "m.png", "r.png", "training_curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    accuracy_by_k_plot(results, tmp_path / "k2.png")
    assert (tmp_path / "k.png").read_bytes() == (tmp_path / "k2.png").read_bytes()
    page = html_report("t", [("table", "table", comparison_rows(results)), ("plot", "png", tmp_path / "k.png")])
    assert page.count("<tr>") == 4 and "data:image/png;base64," in page and "http" not in page


def test_one_seed_gives_the_plain_and_paired_bootstrap_and_ties_count_one_half():
    """With one seed the interval is the percentile bootstrap over pairs the suites reported before seeds (the
    pairs taken in the records' order, sorted by id: here the file's); a tie (margins equal to 6 decimals) counts
    one half, in the accuracy and in the differences."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=40).tolist(), rng.normal(size=40).tolist()
    suites = {"original": [{"id": f"p{i:02d}", "chosen": [], "rejected": []} for i in range(40)]}
    _, results, diffs = evaluate(suites, {"a": {0: {"original": a}}, "b": {0: {"original": b}}}, [["a", "b"]], 300, 7)
    won_a, won_b = [float(x > 0) for x in a], [float(x > 0) for x in b]
    r = results["a"]["original"]
    assert (r["accuracy"], r["ci_low"], r["ci_high"]) == (accuracy_summary(won_a, 300, 7)["accuracy"],
                                                          *bootstrap_ci(won_a, 300, 7))
    d = diffs["a-b"]["original"]
    assert {k: d[k] for k in ("difference", "ci_low", "ci_high", "n")} == paired_difference(won_a, won_b, 300, 7)
    tied = differences({"a": {"s": [1e-9, 1.0]}, "b": {"s": [-1.0, -1.0]}}, [["a", "b"]], 10, 0)
    assert tied["a-b"]["s"]["difference"] == 0.75  # (0.5 + 1) / 2 - 0
    _, results, _ = evaluate(suites, {"a": {0: {"original": [0.0] * 3 + a[3:]}, 1: {"original": a}}}, [], 10, 0)
    assert results["a"]["original"]["ties"] == 3 and results["a"]["original"]["seeds"]["0"]["ties"] == 3
    assert ties_line(results) == ("Ties (equal margins, each counted one half): longer answer wins on original: 40; "
                                  "a seed 0 on original: 3.")  # these pairs have no answers: all of equal length


def test_each_variant_has_one_colour_in_every_plot(monkeypatch, tmp_path):
    """The figures as the plot functions hand them to save_png: every line, bar and error bar of a variant in
    its colour, the same in each plot (and the study's page colours its rows the same way)."""
    from matplotlib.colors import to_hex

    from music_rm.evaluation import heldout, study
    from music_rm.evaluation.report import VARIANT_COLORS, variant_color

    figures = []
    monkeypatch.setattr(heldout, "save_png", lambda fig, path: figures.append(fig))
    monkeypatch.setattr(study, "save_png", lambda fig, path: figures.append(fig))
    by_suite = {s: {"accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 3} for s in ("original", "music_k1", "music_k2")}
    variants = ("baseline", "music", "volume_matched", "my_ablation")
    accuracy_by_k_plot({v: by_suite for v in variants}, tmp_path / "k.png")
    training_curves_plot({v: [{"step": 1.0, "loss": 0.7, "accuracy": 0.5, "margin": 0.1}] for v in variants}, tmp_path / "c.png")
    margin_histogram_plot({v: {"music_k1": [0.1, -0.2]} for v in variants}, "music_k1", tmp_path / "m.png")
    reward_histogram_plot({v: {"music_k1": ([0.3, 0.1], [0.2, 0.4])} for v in variants}, ["music_k1"], tmp_path / "r.png")
    study.accuracy_by_k_plot({"baseline": by_suite, "music, trained at K=1": by_suite, "music, trained at K=2": by_suite},
                             tmp_path / "s.png")
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

    from music_rm.evaluation.report import VARIANT_COLORS
    from tests.conftest import REPO

    template = json.loads((REPO / "configs/dvc/variant_lines.json").read_text())
    scale = template["encoding"]["color"]["scale"]
    assert dict(zip(scale["domain"], scale["range"])) == VARIANT_COLORS
    assert template["encoding"]["strokeDash"]["field"] == "rev"
    combined = [p for entry in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"] for p in entry.values()]
    assert combined and all(p["template"] == "configs/dvc/variant_lines.json" and
                            {f.split("/")[2] for f in p["y"]} <= set(VARIANT_COLORS) for p in combined)
