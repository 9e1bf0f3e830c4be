"""curve.csv, the one contract between the train stage (writer) and the eval stage and `dvc plots` (readers)."""
from music_rm.reward.curve import KEYS, curve_rows, read_curve, write_curve


def test_the_curve_written_from_a_log_history_reads_back(tmp_path):
    history = [{"step": 1, "loss": 0.69, "accuracy": 0.5, "margin": 0.0, "learning_rate": 1e-05, "grad_norm": 2.5},
               {"step": 2, "loss": 0.6, "accuracy": 1.0, "margin": 0.25, "learning_rate": 5e-06},  # no grad_norm
               {"step": 2, "train_runtime": 3.0}]  # the end-of-training summary has no loss: not a curve row
    rows = curve_rows(history)
    assert [r["step"] for r in rows] == [1, 2]
    write_curve(tmp_path / "curve.csv", rows)
    text = (tmp_path / "curve.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "step," + ",".join(KEYS)
    assert text.splitlines()[2] == "2,0.6,1.0,0.25,5e-06,"
    assert read_curve(tmp_path / "curve.csv") == [{"step": 1.0, **{k: float(history[0][k]) for k in KEYS}},
                                                   {"step": 2.0, "loss": 0.6, "accuracy": 1.0, "margin": 0.25,
                                                    "learning_rate": 5e-06, "grad_norm": None}]
