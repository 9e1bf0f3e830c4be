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
