"""The train stage under `accelerate launch` with 2 CPU processes (DDP over gloo) on a tiny model."""
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

from music_rm.io import read_json, write_jsonl
from music_rm.reward import load_reward_model, score
from music_rm.sources import fetch
from tests.conftest import REPO
from tests.test_sources import params as fetch_params


def test_two_process_ddp_trains_one_model_with_the_global_batch(tiny_model, tmp_path):
    train, _, _ = fetch(fetch_params())
    write_jsonl(tmp_path / "train.jsonl", train)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["config"].update(bf16=False, batch_size=2, epochs=1, max_length=384, learning_rate=1e-3)
    params["train"]["variants"] = {"baseline": {"pairs": str(tmp_path / "train.jsonl")}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    accelerate = Path(sys.executable).parent / "accelerate"
    result = subprocess.run(
        [str(accelerate), "launch", "--config_file", "configs/accelerate/cpu_ddp.yaml", "stages/train.py",
         "--variant", "baseline", "--params", str(tmp_path / "params.yaml"), "--model", str(tiny_model),
         "--out", str(tmp_path / "rm"), "--reports", str(tmp_path / "reports")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_json(tmp_path / "reports" / "baseline" / "metrics.json")
    assert summary["world_size"] == 2
    assert summary["steps"] == -(-len(train) // (2 * 2))  # per-device batch 2 × 2 processes
    assert "on 2 process(es)" in result.stdout
    model, tokenizer = load_reward_model(str(tmp_path / "rm" / "baseline"))
    assert all(abs(s) < 1e4 for s in score(model, tokenizer, [train[0]["chosen"], train[0]["rejected"]], 2))
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # only the main process logs
        assert db.execute("select count(*) from runs where name = 'workspace/train@baseline'").fetchone()[0] == 1
