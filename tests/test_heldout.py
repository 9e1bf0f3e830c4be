"""Held-out suites on a tiny random-init reward model: accuracies with bootstrap CIs, every K, plots, report;
the shared statistics."""
import numpy as np
import pytest

from music_rm.evaluation.heldout import (accuracy_by_k_plot, comparison_rows, comparison_table, evaluate_variants,
                                         margin_histogram_plot, music_suites, reward_histogram_plot,
                                         training_curves_plot)
from music_rm.evaluation.report import html_report
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


def test_every_variant_is_scored_at_every_k_with_intervals_plots_and_report(rm_dir, tmp_path):
    trees = [tree(f"t{i}", "test") for i in range(6)] + [tree("x", "train")]
    suites = music_suites(assemble([], trees, 2, 0, lambda pair: "fit", 0.0)[0]["test_by_k"])  # contrast cuts every K once; eval reads them
    assert list(suites) == ["music_k1", "music_k2", "music_k3"]
    assert all(p["k"] == 2 and p["split"] == "test" for p in suites["music_k2"]) and len(suites["music_k2"]) == 6
    results, margins, rewards = evaluate_variants({"a": str(rm_dir), "b": str(rm_dir)}, suites, batch_size=4,
                                                  max_length=None, resamples=200, seed=0, cpu_dtype="float32",
                                                  cache=False)
    for variant in ("a", "b"):
        for suite, pairs in suites.items():
            r = results[variant][suite]
            assert r["n"] == len(pairs) and r["ci_low"] <= r["accuracy"] <= r["ci_high"]
            assert r["accuracy"] == np.mean([m > 0 for m in margins[variant][suite]])
            chosen, rejected = rewards[variant][suite]
            assert [c - j for c, j in zip(chosen, rejected)] == margins[variant][suite] and len(chosen) == len(pairs)
    assert results["a"] == results["b"]  # same model, same data, same seed
    table = comparison_table(results)
    assert table.splitlines()[0] == "| variant | music_k1 | music_k2 | music_k3 |"
    accuracy_by_k_plot(results, tmp_path / "k.png")
    margin_histogram_plot(margins, "music_k1", tmp_path / "m.png")
    reward_histogram_plot(rewards, ["music_k1", "music_k2"], tmp_path / "r.png")
    for name in ("k.png", "m.png", "r.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    accuracy_by_k_plot(results, tmp_path / "k2.png")
    assert (tmp_path / "k.png").read_bytes() == (tmp_path / "k2.png").read_bytes()
    page = html_report("t", [("table", "table", comparison_rows(results)), ("plot", "png", tmp_path / "k.png")])
    assert page.count("<tr>") == 3 and "data:image/png;base64," in page and "http" not in page


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
