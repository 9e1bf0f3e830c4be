"""A reward model's training curve, data/train/<variant>/seed-<seed>/curve.csv: written by the train stage, read by the eval
stage's plot and by DVC (`dvc plots`). One row per logged step; a value a step did not log is an empty cell."""
import csv

from ..core.io import write_text

KEYS = ("loss", "accuracy", "margin", "learning_rate", "grad_norm")


def curve_rows(log_history: list[dict]) -> list[dict]:
    """The steps of a Trainer's log history that logged a training loss, with the curve's keys they have."""
    return [{"step": h["step"], **{k: h[k] for k in KEYS if k in h}} for h in log_history if "loss" in h]


def write_curve(path, rows: list[dict]) -> None:
    """curve.csv, atomically: a `step` column, then KEYS."""
    write_text(path, "step," + ",".join(KEYS) + "\n" + "".join(
        f"{row['step']}," + ",".join(str(row.get(k, "")) for k in KEYS) + "\n" for row in rows))


def read_curve(path) -> list[dict]:
    """The rows of a curve.csv, numbers as floats, empty cells as None."""
    with open(path, encoding="utf-8") as f:
        return [{k: float(v) if v != "" else None for k, v in row.items()} for row in csv.DictReader(f)]
