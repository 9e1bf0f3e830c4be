"""Per-item records and the one statistic computed from them (estimates.py): what a suite writes is what a reader
reads back, verdicts come from the stored margin, and intervals take seeds and clusters into account."""
import numpy as np
import pytest

from music_rm.evaluation.estimates import Arm, accuracy, arm_of, arms, difference, suite_result
from music_rm.evaluation.records import Record, outcome, parse_records, read_records, records_csv, write_records
from music_rm.evaluation.stats import seeded_bootstrap


def test_records_round_trip_sorted_with_the_cluster_defaulting_to_the_item(tmp_path):
    rows = [Record.of("s", "b", "music", 1, 0.1234567), Record.of("s", "a", "music", 0, -2.0, cluster="q1")]
    write_records(tmp_path / "records.csv", rows)
    back = read_records(tmp_path / "records.csv")
    assert [(r.item, r.cluster, r.seed, r.margin) for r in back] == [("a", "q1", 0, -2.0), ("b", "b", 1, 0.123457)]
    assert records_csv(rows) == records_csv(list(reversed(rows)))  # order-free: same records, same bytes
    assert parse_records(records_csv(rows)) == back


def test_a_tie_is_a_margin_of_zero_to_six_decimals_and_counts_one_half():
    assert [outcome(m) for m in (0.3, -0.3, 0.0, 4e-7, -4e-7, 6e-7)] == [1.0, 0.0, 0.5, 0.5, 0.5, 1.0]
    # what the stage decides equals what the stored margin says
    stored = parse_records(records_csv([Record.of("s", "x", "v", 0, -4e-7)]))
    assert outcome(stored[0].margin) == outcome(-4e-7) == 0.5 and stored[0].margin == 0.0


def test_seeded_bootstrap_widens_with_seed_spread_and_with_clustered_items():
    rng = np.random.default_rng(0)
    base = (rng.random(300) < 0.6).astype(float)
    # four seeds that agree give the one-seed width; four that disagree give a wider interval
    agree = seeded_bootstrap(np.stack([base] * 4), resamples=2000, seed=1)
    spread = seeded_bootstrap(np.stack([base] + [(rng.random(300) < p).astype(float) for p in (0.4, 0.8, 0.5)]),
                              resamples=2000, seed=1)
    width = lambda r: r["ci_high"] - r["ci_low"]  # noqa: E731
    assert width(spread) > 1.5 * width(agree)
    # 30 clusters of 10 identical items: as wide as 30 items, wider than 300 independent ones
    clustered = np.repeat((rng.random(30) < 0.6).astype(float), 10)
    by_item = seeded_bootstrap(clustered, resamples=2000, seed=1)
    by_cluster = seeded_bootstrap(clustered, clusters=np.repeat(np.arange(30), 10), resamples=2000, seed=1)
    assert width(by_cluster) > 2.5 * width(by_item)


def records_of(variant, margins_by_seed, clusters=None, suite="s"):
    return [Record.of(suite, f"i{i:03d}", variant, seed, m, None if clusters is None else clusters[i])
            for seed, margins in margins_by_seed.items() for i, m in enumerate(margins)]


def test_an_arm_is_seeds_by_items_and_keeps_the_items_every_seed_scored():
    rows = records_of("a", {0: [1.0, -1.0, 0.0], 1: [2.0, -2.0, 3.0]}) + [Record.of("s", "extra", "a", 0, 1.0)]
    arm = arms(rows)["a"]
    assert arm.seeds == (0, 1) and arm.items == ("i000", "i001", "i002") and arm.margins.shape == (2, 3)
    a = accuracy(arm, resamples=200, seed=0)
    assert a.estimate == pytest.approx((1 + 0 + 0.5 + 1 + 0 + 1) / 6, abs=1e-6) and a.n == 3 and a.seeds == 2
    assert a.ties == 1 and a.records == 6 and a.per_seed == {"0": {"estimate": 0.5, "ties": 1},
                                                            "1": {"estimate": pytest.approx(2 / 3, abs=1e-6), "ties": 0}}
    assert arm_of(rows, "nobody").items == () and accuracy(arm_of(rows, "nobody"), 10, 0).estimate is None


def test_one_seed_and_single_item_clusters_give_the_plain_and_paired_bootstrap():
    """Resampling single-item clusters draws the same items as resampling items: the estimate and the interval are
    the plain bootstrap's, whether or not the records name the clusters."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=40), rng.normal(size=40)
    rows = records_of("a", {0: a}) + records_of("b", {0: b})
    result = suite_result(rows, [("a", "b")], 300, 7, order=["b"])
    assert list(result.models) == ["b", "a"]  # `order` first, then the rest by name
    plain = seeded_bootstrap((a > 0).astype(float), resamples=300, seed=7)
    assert (result.models["a"].estimate, result.models["a"].ci_low, result.models["a"].ci_high) == (
        plain["estimate"], plain["ci_low"], plain["ci_high"])
    by_cluster = seeded_bootstrap((a > 0).astype(float), clusters=[f"i{i:03d}" for i in range(40)], resamples=300, seed=7)
    assert (by_cluster["ci_low"], by_cluster["ci_high"]) == (plain["ci_low"], plain["ci_high"])
    paired = seeded_bootstrap((a > 0).astype(float), (b > 0).astype(float), resamples=300, seed=7)
    d = result.differences["a-b"]
    assert (d.estimate, d.ci_low, d.ci_high, d.n) == (paired["estimate"], paired["ci_low"], paired["ci_high"], 40)
    assert d.detectable == pytest.approx(2.8 * (d.ci_high - d.ci_low) / 3.92, abs=1e-6)


def test_a_difference_pairs_the_shared_items_and_resamples_clusters():
    clusters = [f"q{i // 4}" for i in range(40)]  # ten clusters of four items
    a = arms(records_of("a", {0: [1.0] * 20 + [-1.0] * 20}, clusters))["a"]
    b = arms(records_of("b", {0: [1.0] * 10 + [-1.0] * 30}, clusters))["b"]
    d = difference(a, b, 500, 0)
    assert d.estimate == 0.25 and d.n == 40 and d.clusters == 10
    partial = arms(records_of("b", {0: [1.0] * 10}, clusters))["b"]  # b scored the first 10 items only
    assert difference(a, partial, 100, 0).n == 10 and difference(a, partial, 100, 0).estimate == 0.0
    assert difference(a, Arm("c", (0,), (), (), np.zeros((1, 0))), 10, 0) is None
    # the same items, resampled by cluster, give a wider interval than as independent items
    flat = difference(arms(records_of("a", {0: [1.0] * 20 + [-1.0] * 20}))["a"],
                      arms(records_of("b", {0: [1.0] * 10 + [-1.0] * 30}))["b"], 500, 0)
    assert d.ci_high - d.ci_low > flat.ci_high - flat.ci_low
