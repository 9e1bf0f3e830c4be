"""The experiment table (`music-rm exps`): what changed and what it did, within 120 columns. On real DVC
experiments in tests/test_pipeline.py; here on what `dvc exp show --json` prints, shaped as DVC 3 prints it."""
from music_rm.evaluation.experiments import changed_params, experiment_rows, experiment_table

SUITES = ("original", "music_k1", "music_k2", "music_k3")


def node(rev, name, params, acc):
    variants = ("baseline", "music", "volume_matched")
    metrics = {"suites": {s: {"models": {**{v: {"estimate": acc + i / 10 + j / 100, "n": 9} for i, v in enumerate(variants)},
                                         "longer_answer": {"estimate": 0.4, "n": 9}}, "differences": {}}
                          for j, s in enumerate(SUITES)}} if acc else {}
    return {"rev": rev, "name": name, "data": {"rev": rev, "params": {"params.yaml": {"data": params}},
                                               "metrics": {"data/eval/metrics.json": {"data": metrics}} if acc else {}}}


def params(turns, lr=1e-5, batch=8):
    return {"contrast": {"turns": turns}, "train": {"config": {"learning_rate": lr}},
            "eval": {"batch_size": batch}}


def show(*exps):
    head = node("a" * 40, "main", params(2), 0.5)
    head["experiments"] = [{"revs": [node(rev, name, p, acc)], "name": name, "executor": None} for rev, name, p, acc in exps]
    return [node("workspace", None, params(1), 0.6), head]


def test_rows_name_every_experiment_and_the_table_shows_changed_params_and_every_accuracy():
    rows = experiment_rows(show(("b" * 40, "gaunt-gram", params(1), 0.6), ("c" * 40, "queued-one", params(3), None)))
    assert [r["name"] for r in rows] == ["workspace", "main", "gaunt-gram", "queued-one"]
    assert changed_params(rows) == ["contrast.turns"]
    table = experiment_table(rows, 120)
    lines = table.splitlines()
    assert max(map(len, lines)) <= 120, table
    assert lines[0].split() == ["|", "baseline", "|", "music", "|", "volume_matched"]
    assert lines[1].split()[:2] == ["experiment", "contrast.turns"] and lines[1].count("orig") == 3
    assert lines[1].count("k3") == 3
    gaunt = next(line for line in lines if line.startswith("gaunt-gram"))
    assert gaunt.split()[1:7] == ["1", "|", "0.60", "0.61", "0.62", "0.63"]  # baseline: orig, k1, k2, k3
    assert gaunt.split()[-1] == f"{0.6 + 0.2 + 0.03:.2f}"  # volume_matched on music_k3
    queued = next(line for line in lines if line.startswith("queued-one"))
    assert queued.split()[1] == "3" and queued.count(" -") == 12  # no result yet, each cell says so
    assert "learning_rate" not in table and "longer" not in table


def test_many_changed_params_share_one_clipped_column_within_the_width():
    rows = experiment_rows(show(("b" * 40, "grid-1", params(1, 3e-5, 2), 0.6), ("c" * 40, "grid-2", params(3, 1e-4, 4), 0.7)))
    assert changed_params(rows) == ["contrast.turns", "train.config.learning_rate", "eval.batch_size"]
    table = experiment_table(rows, 120)
    assert max(map(len, table.splitlines())) <= 120, table
    assert table.splitlines()[1].split()[:2] == ["experiment", "changed"]
    grid2 = next(line for line in table.splitlines() if line.startswith("grid-2"))
    assert grid2.split()[1:4] == ["turns=3", "learning_rate=0.0001", "batch_size=4"]
    assert "changed: contrast.turns, train.config.learning_rate, eval.batch_size" in table
    narrow = experiment_table(rows, 90)
    assert max(map(len, narrow.splitlines())) <= 90 and "turns=3 lea…" in narrow, narrow
