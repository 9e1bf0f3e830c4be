"""SIGKILL part-way through stage scripts, rerun, compare bytes with an uninterrupted run: fetch and contrast at
seeded moments (file writes and the commit included), simulate and train part-way and after a checkpoint. After
each kill the outputs are all old or all new; after the rerun no staging folder is left and no MLflow run is
RUNNING. The file took 272 CPU-seconds (11.4 min wall on 2 cores shared with other jobs, load 8)."""
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from music_rm.core.io import write_jsonl
from music_rm.core.outputs import PREFIX, recover
from music_rm.core.tracking import LOG_FILE
from music_rm.data.sources import fetch
from music_rm.reward.train import CHECKPOINT_COMPLETE
from tests.conftest import REPO, write_manifests
from tests.test_sources import params as fetch_params


def small_simulate(root: Path) -> dict:
    """fetch's embedded train and test pairs in `root`/data, and the repo's params with a small simulate section."""
    train, test, _ = fetch(fetch_params())
    write_jsonl(root / "data" / "train.jsonl", train)
    write_jsonl(root / "data" / "test.jsonl", test)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["simulate"].update(dtype="float32", batch_size=4, turns=3, train_prompts=8, test_prompts=8)
    for role in ("assistant", "user", "rewriter"):
        params["simulate"][role]["max_new_tokens"] = 8
    return params


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("interrupt")
    params = small_simulate(root)
    params["train"]["config"].update(bf16=False, batch_size=2, epochs=3, max_length=384, learning_rate=1e-3)
    params["train"]["variants"] = {"baseline": {"pairs": str(root / "data" / "train.jsonl")}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root, tiny_model


def stage(script: str, root: Path, *args) -> list[str]:
    return [sys.executable, str(REPO / "stages" / script), "--params", str(root / "params.yaml"), *args]


def env_for(root: Path, tag: str) -> dict:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / f'mlflow-{tag}.db'}",
            "MUSIC_CACHE_DIR": str(root / f"cache-{tag}")}


def count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or locked by the writer
        return 0


def kill_when(cmd, env, ready, timeout_s=300) -> None:
    """Start `cmd`, SIGKILL it as soon as `ready()` holds; fail if it finished first."""
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout_s
    while not ready():
        assert proc.poll() is None, "the stage finished before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def run_ok(cmd, env) -> None:
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


RUNNING = "select count(*) from runs where status = 'RUNNING'"


def assert_clean_after_rerun(root: Path, tag: str) -> None:
    """No staging folder left beside the outputs, no MLflow run left RUNNING."""
    assert not list(root.glob(PREFIX + "*")), list(root.glob(PREFIX + "*"))
    assert count(root / f"mlflow-{tag}.db", RUNNING) == 0


def test_simulate_killed_part_way_then_rerun_gives_identical_outputs(workdir):
    root, model = workdir
    outputs = ("trees.jsonl", "summary.json", "sample.md")
    args = ["--data", str(root / "data"), "--model", str(model)]
    run_ok(stage("simulate.py", root, *args, "--out", str(root / "sim-a")), env_for(root, "a"))

    cache = root / "cache-b" / "generation.sqlite"
    cmd = stage("simulate.py", root, *args, "--out", str(root / "sim-b"))
    total = count(root / "cache-a" / "generation.sqlite", "select count(*) from generations")
    kill_when(cmd, env_for(root, "b"), lambda: count(cache, "select count(*) from generations") >= total // 2)
    assert not (root / "sim-b").exists() or not any((root / "sim-b" / name).exists() for name in outputs)
    run_ok(cmd, env_for(root, "b"))
    for name in outputs:
        assert (root / "sim-a" / name).read_bytes() == (root / "sim-b" / name).read_bytes(), name
    assert_clean_after_rerun(root, "b")


def test_train_killed_part_way_then_rerun_gives_identical_outputs(workdir):
    root, model = workdir
    args = ["--variant", "baseline", "--seed", "0", "--model", str(model)]
    outs = {tag: (root / f"rm-{tag}", root / f"reports-{tag}") for tag in ("a", "b")}
    for tag in ("a", "b"):
        outs[tag][0].mkdir()
        write_manifests(root / "params.yaml", outs[tag][1])
    cmd = {tag: stage("train.py", root, *args, "--out", str(outs[tag][0]), "--reports", str(outs[tag][1]))
           for tag in ("a", "b")}
    run_ok(cmd["a"], env_for(root, "a"))

    steps_logged = "select count(*) from metrics where key = 'train/loss'"
    kill_when(cmd["b"], env_for(root, "b"), lambda: count(root / "mlflow-b.db", steps_logged) >= 3)
    assert not (outs["b"][0] / "baseline" / "seed-0").exists()  # no output; at most the stage's log beside them
    assert {p.name for p in outs["b"][1].rglob("*") if p.is_file()} <= {"stage.log", "seed-0.json"}  # and the manifest
    run_ok(cmd["b"], env_for(root, "b"))
    for relative in ("baseline/seed-0/model.safetensors", "baseline/seed-0/config.json"):
        assert (outs["a"][0] / relative).read_bytes() == (outs["b"][0] / relative).read_bytes(), relative
    for relative in ("baseline/seed-0/metrics.json", "baseline/seed-0/curve.csv"):
        assert (outs["a"][1] / relative).read_bytes() == (outs["b"][1] / relative).read_bytes(), relative
    assert not (outs["b"][0] / "baseline" / ".seed-0.partial").exists()
    assert_clean_after_rerun(root, "b")


def test_train_killed_after_a_checkpoint_resumes_from_it(workdir):
    root, model = workdir
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["config"]["save_steps"] = 4
    (root / "params-ckpt.yaml").write_text(yaml.safe_dump(params))
    cmd = {tag: [sys.executable, str(REPO / "stages" / "train.py"), "--params", str(root / "params-ckpt.yaml"),
                 "--variant", "baseline", "--seed", "0", "--model", str(model), "--out", str(root / f"rm-ckpt-{tag}"),
                 "--reports", str(root / f"reports-ckpt-{tag}")] for tag in ("a", "b")}
    for tag in ("a", "b"):
        write_manifests(root / "params-ckpt.yaml", root / f"reports-ckpt-{tag}")
    run_ok(cmd["a"], env_for(root, "ckpt-a"))
    checkpoints = root / "cache-ckpt-b" / "checkpoints"
    kill_when(cmd["b"], env_for(root, "ckpt-b"), lambda: any(
        int(c.name.split("-")[1]) >= 8 for c in checkpoints.glob("*/checkpoint-*") if (c / CHECKPOINT_COMPLETE).exists()))
    result = subprocess.run(cmd["b"], env=env_for(root, "ckpt-b"), cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout and "checkpoint-" in result.stdout
    assert not any(checkpoints.iterdir())  # removed once the model is in place
    a, b = root / "rm-ckpt-a" / "baseline" / "seed-0", root / "rm-ckpt-b" / "baseline" / "seed-0"
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert ((root / "reports-ckpt-a" / "baseline" / "seed-0" / "metrics.json").read_bytes()
            == (root / "reports-ckpt-b" / "baseline" / "seed-0" / "metrics.json").read_bytes())


# Runs a stage script with os.replace counted (each atomic write ends in one, and so does each output moved in at
# the commit), SIGKILLed just before call N (0: never); the destinations go to a JSON file at exit.
COUNTED = """
import atexit, json, os, runpy, signal, sys
kill_at, log = int(sys.argv[1]), sys.argv[2]
real_replace, calls = os.replace, []
def replace(src, dst, *args, **kwargs):
    calls.append(str(dst))
    if len(calls) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *args, **kwargs)
os.replace = replace
atexit.register(lambda: open(log, "w").write(json.dumps(calls)))
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def counted(kill_at: int, log: Path, cmd: list[str]) -> list[str]:
    return [sys.executable, "-c", COUNTED, str(kill_at), str(log), *cmd[1:]]


@pytest.fixture(scope="module")
def trees(workdir):
    root, model = workdir
    if not (root / "sim-a" / "trees.jsonl").exists():  # test_simulate... makes it when it runs first
        run_ok(stage("simulate.py", root, "--data", str(root / "data"), "--model", str(model), "--out",
                     str(root / "sim-a")), env_for(root, "a"))
    return root / "sim-a" / "trees.jsonl"


def outputs(folder: Path) -> dict:
    """The stage's outputs in `folder` (its log beside them is no output)."""
    return ({p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != LOG_FILE} if folder.exists() else {})


@pytest.mark.parametrize("name", ["fetch", "contrast"])
def test_stage_killed_at_seeded_moments_leaves_old_or_new_outputs_and_a_rerun_finishes(workdir, trees, name, report):
    root, model = workdir
    left_out = root / "dropped.json"  # decontaminate's output with nothing to leave out, as by default
    left_out.write_text(json.dumps({"original_pairs": [], "music_trees": []}))
    reserve = root / "reserve.jsonl"  # fetch's reserve for the diversity-matched arm: empty, as at reserve_fraction 0
    reserve.write_text("")
    args = {"fetch": [], "contrast": ["--trees", str(trees), "--original", str(root / "data" / "train.jsonl"),
                                      "--reserve", str(reserve), "--left-out", str(left_out),
                                      "--model", str(model)]}[name]
    cmd = {tag: stage(f"{name}.py", root, *args, "--out", str(root / f"{name}-{tag}")) for tag in ("a", "b")}
    log = root / f"{name}-replaces.json"
    start = time.perf_counter()
    run_ok(counted(0, log, cmd["a"]), env_for(root, f"{name}-a"))
    seconds = time.perf_counter() - start
    reference = outputs(root / f"{name}-a")
    calls = json.loads(log.read_text())
    commit = next(i for i, dst in enumerate(calls, start=1) if dst.endswith("COMMITTED"))
    writes = [i for i, dst in enumerate(calls, start=1) if PREFIX in dst and i < commit]
    moves = [i for i, dst in enumerate(calls, start=1) if f"{name}-a" in dst and PREFIX not in dst]
    rng = random.Random(23)
    moments = [("write", rng.choice(writes)), ("commit", commit), ("move", rng.choice(moves)),
               ("time", rng.uniform(0.3, 0.9) * seconds)]
    env = env_for(root, f"{name}-b")
    for kind, at in moments:
        if kind == "time":
            proc = subprocess.Popen(cmd["b"], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(at)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        else:
            result = subprocess.run(counted(at, root / "unused.json", cmd["b"]), env=env, cwd=REPO, capture_output=True)
            assert result.returncode == -signal.SIGKILL, (kind, at, result.stderr[-2000:])
        recover(root)  # what the next stage does first
        found = outputs(root / f"{name}-b")
        assert found in ({}, reference), (kind, at, sorted(found))
    run_ok(cmd["b"], env)
    assert outputs(root / f"{name}-b") == reference
    assert_clean_after_rerun(root, f"{name}-b")
    report(f"{name} killed at {', '.join(f'{k} {a:.1f} s' if k == 'time' else f'{k} (os.replace #{a})' for k, a in moments)}"
           f" of a {seconds:.1f} s run: outputs all old or all new each time, equal after the rerun")


@pytest.mark.parametrize("config,processes", [("configs/accelerate/default.yaml", 1),
                                              ("configs/accelerate/cpu_ddp.yaml", 2)])
def test_ctrl_c_during_training_prints_one_line_and_no_process_outlives_the_stage(tiny_model, tmp_path, config,
                                                                                  processes):
    """dvc.yaml's train command in a process group of its own, as a terminal runs it, sent SIGINT as Ctrl-C sends it
    to every process of the group: accelerate's one-process launch (which waits for its child a moment only) and
    its torchrun launch (whose parent printed a KeyboardInterrupt traceback)."""
    from music_rm.core.processes import group_members
    from tests.test_ddp import two_process_run

    _, cmd, env = two_process_run(tiny_model, tmp_path, epochs=50)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train"]["accelerate_config"] = config
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    db = tmp_path / "mlflow.db"
    deadline = time.time() + 300
    while count(db, "select count(*) from metrics where key = 'train/loss'") < 2:
        assert proc.poll() is None and time.time() < deadline, "the training ended before it could be interrupted"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert group_members(proc.pid) == []  # every process of the stage is gone when it returns
    assert proc.returncode == 128 + signal.SIGINT
    assert "Traceback" not in err and "Aborted!" not in err
    line = (f"train@baseline-0: interrupted (SIGINT): its {processes} training process(es) stopped and gone; a rerun "
            f"starts over (train.config.save_steps is null: no checkpoints)")
    assert [l for l in err.splitlines() if "nterrupt" in l] == [line]
    assert err.rstrip().endswith(line)
    assert count(db, RUNNING) == 0
