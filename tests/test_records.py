"""Per-item records: what a suite writes is what a reader reads back, and verdicts come from the stored margin."""
from music_rm.evaluation.records import outcome, read_records, records_csv, write_records


def test_records_round_trip_sorted_with_the_cluster_defaulting_to_the_item(tmp_path):
    rows = [{"suite": "s", "item": "b", "variant": "music", "seed": 1, "margin": 0.1234567},
            {"suite": "s", "item": "a", "cluster": "q1", "variant": "music", "seed": 0, "margin": -2.0}]
    write_records(tmp_path / "records.csv", rows)
    back = read_records(tmp_path / "records.csv")
    assert [(r["item"], r["cluster"], r["seed"], r["margin"]) for r in back] == [("a", "q1", 0, -2.0),
                                                                                ("b", "b", 1, 0.123457)]
    assert records_csv(rows) == records_csv(list(reversed(rows)))  # order-free: same records, same bytes


def test_a_tie_is_a_margin_of_zero_to_six_decimals_and_counts_one_half():
    assert [outcome(m) for m in (0.3, -0.3, 0.0, 4e-7, -4e-7, 6e-7)] == [1.0, 0.0, 0.5, 0.5, 0.5, 1.0]
    # what the stage decides equals what the stored margin says
    stored = read_records_from_text(records_csv([{"suite": "s", "item": "x", "variant": "v", "seed": 0,
                                                   "margin": -4e-7}]))
    assert outcome(stored[0]["margin"]) == outcome(-4e-7) == 0.5


def read_records_from_text(text):
    import csv
    import io
    return [{**r, "margin": float(r["margin"])} for r in csv.DictReader(io.StringIO(text))]


def test_seeded_bootstrap_widens_with_seed_spread_and_with_clustered_items():
    import numpy as np

    from music_rm.evaluation.stats import paired_difference, seeded_bootstrap

    rng = np.random.default_rng(0)
    base = (rng.random(300) < 0.6).astype(float)
    # one seed, no clusters: the plain paired bootstrap, same estimate
    other = (rng.random(300) < 0.5).astype(float)
    one = seeded_bootstrap(base, other, resamples=2000, seed=1)
    plain = paired_difference(base, other, 2000, 1)
    assert one["estimate"] == plain["difference"] and one["n"] == 300 and one["seeds"] == 1
    assert abs((one["ci_high"] - one["ci_low"]) - (plain["ci_high"] - plain["ci_low"])) < 0.02
    # four seeds that agree give the one-seed width; four that disagree give a wider interval
    agree = seeded_bootstrap(np.stack([base] * 4), resamples=2000, seed=1)
    spread = seeded_bootstrap(np.stack([np.roll(base, 0)] + [(rng.random(300) < p).astype(float)
                                                               for p in (0.4, 0.8, 0.5)]), resamples=2000, seed=1)
    width = lambda r: r["ci_high"] - r["ci_low"]
    assert width(spread) > 1.5 * width(agree)
    # 30 clusters of 10 identical items: as wide as 30 items, wider than 300 independent ones
    clustered = np.repeat((rng.random(30) < 0.6).astype(float), 10)
    by_item = seeded_bootstrap(clustered, resamples=2000, seed=1)
    by_cluster = seeded_bootstrap(clustered, clusters=np.repeat(np.arange(30), 10), resamples=2000, seed=1)
    assert width(by_cluster) > 2.5 * width(by_item)
