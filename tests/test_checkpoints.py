"""Checkpoints no run will resume are removed: a training run killed after a checkpoint, then rerun with other
params, leaves no folder of the killed run behind (one log line with its size), nor of a variant params.yaml no
longer has; a folder whose run is alive, or of another variant still in params.yaml, stays."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import yaml

from music_rm.core.io import write_json, write_jsonl
from music_rm.data.sources import fetch
from music_rm.reward.train import CHECKPOINT_COMPLETE
from music_rm.reward.variant import OWNER_FILE
from tests.conftest import REPO, write_manifests
from tests.test_sources import params as fetch_params


def test_a_killed_runs_checkpoints_are_removed_by_the_next_run_after_a_params_change(tmp_path, tiny_model):
    train, _, _ = fetch(fetch_params())
    write_jsonl(tmp_path / "train.jsonl", train)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["config"].update(bf16=False, batch_size=2, max_length=384, learning_rate=1e-3, save_steps=2)
    variants = {"baseline": {"pairs": str(tmp_path / "train.jsonl")}, "other": {"pairs": str(tmp_path / "train.jsonl")}}
    params["train"]["variants"] = variants
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    write_manifests(tmp_path / "params.yaml", tmp_path / "reports")
    cache = tmp_path / "cache" / "checkpoints"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "MUSIC_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, str(REPO / "stages" / "train.py"), "--params", str(tmp_path / "params.yaml"),
           "--variant", "baseline", "--seed", "0", "--model", str(tiny_model), "--out", str(tmp_path / "rm"),
           "--reports", str(tmp_path / "reports")]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(cache.glob(f"baseline-seed-0-*/checkpoint-*/{CHECKPOINT_COMPLETE}")):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint before the run ended"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    [killed] = cache.glob("baseline-seed-0-*")
    size = sum(p.stat().st_size for p in killed.rglob("*") if p.is_file())
    # beside it: a run of this variant and seed still alive (this process), a folder of a variant params.yaml no
    # longer has, and one of another variant it has
    alive, gone, other = (cache / f"{name}-seed-0-{'a' * 16}" for name in ("baseline", "dropped", "other"))
    for folder in (alive, gone, other):
        (folder / "checkpoint-2").mkdir(parents=True)
    write_json(alive / OWNER_FILE, {"host": socket.gethostname(), "pid": os.getpid()})
    write_json(gone / OWNER_FILE, {"host": socket.gethostname(), "pid": proc.pid})  # the killed run's: gone

    params["train"]["config"]["learning_rate"] = 2e-3  # a params change: the killed run's key is no run's now
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    write_manifests(tmp_path / "params.yaml", tmp_path / "reports")
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not killed.exists() and not gone.exists(), result.stderr[-3000:]
    assert alive.exists() and other.exists()
    # the new run's own folder: removed once its model is in place
    assert sorted(p.name for p in cache.iterdir()) == sorted([alive.name, other.name])
    kib = f"{size / 1024:.1f} KiB"
    assert (f"{killed}: removed {kib} of abandoned checkpoints (made with other train params, pairs, base model or "
            "number of processes)") in result.stderr
    assert re.search(rf"{re.escape(str(gone))}: removed \d+ B of abandoned checkpoints \(variant dropped is not in "
                     r"train.variants\)", result.stderr)

