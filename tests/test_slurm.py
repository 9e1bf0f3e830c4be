"""The train stage in a real SLURM allocation of two nodes (tests/slurm_cluster.py: slurmctld and two slurmd on
this host, from Debian's slurm-wlm): `dvc repro` in a batch job runs dvc.yaml's train command, which starts one
launcher per node with srun, rank and head node taken from the allocation. What one host cannot show: two
machines (both nodes are 127.0.0.1, so the head's address and a shared filesystem are given), GPUs, NCCL."""
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from music_rm.core.io import read_json, write_jsonl
from music_rm.data.sources import fetch_with_reserve
from music_rm.reward.train import CHECKPOINT_COMPLETE
from tests.conftest import REPO
from tests.test_ddp import two_process_run
from tests.test_nodes import NODE_CONFIG, free_port
from tests.test_pipeline import copy_sources, run
from tests.test_sources import params as fetch_params

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def sbatch(env, cwd, command: str, out: Path, nodes: int = 2, wait: bool = True):
    """`sbatch --wait` of `command` on `nodes` nodes; the result, its output in `out`."""
    args = ["sbatch", f"--nodes={nodes}", f"--output={out}", f"--chdir={cwd}", "--wrap", command]
    if wait:
        return subprocess.run([args[0], "--wait", *args[1:]], env=env, capture_output=True, text=True, timeout=900)
    return subprocess.run([*args, "--parsable"], env=env, capture_output=True, text=True, timeout=60)


def pipeline_env(slurm) -> dict:
    env = {**slurm, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for name in ("DVC_ROOT", "MLFLOW_TRACKING_URI", "MUSIC_CACHE_DIR"):
        env.pop(name, None)
    return env


@pytest.fixture
def clone(tmp_path, tiny_model):
    """A DVC repo of this one in which base_model and fetch are recorded as run (the embedded pairs, the tiny
    model), the train stage configured for one CPU process per node and a fixed port."""
    root = tmp_path / "repo"
    root.mkdir()
    copy_sources(root)
    (root / "configs/accelerate/cpu_node.yaml").write_text(yaml.safe_dump(NODE_CONFIG))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update(accelerate_config="configs/accelerate/cpu_node.yaml", main_process_port=free_port())
    params["train"]["config"].update(bf16=False, batch_size=2, max_length=384, learning_rate=1e-3)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    shutil.copytree(tiny_model, root / "models/base")
    train, reserve, test, _ = fetch_with_reserve(fetch_params())
    write_jsonl(root / "data/fetch/train.jsonl", train)
    write_jsonl(root / "data/fetch/reserve.jsonl", reserve)
    write_jsonl(root / "data/fetch/test.jsonl", test)
    for name in ("data/base_model/environment.json", "data/fetch/environment.json", "data/fetch/summary.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}\n")
    run(["dvc", "repro", "check_params"], root)
    run(["dvc", "commit", "-f", "-q", "base_model", "fetch"], root)
    run(["git", "add", "-A"], root)
    run([*GIT, "commit", "-qm", "upstream stages recorded"], root)
    return root, train


def test_dvc_repro_in_a_two_node_allocation_trains_on_both_nodes_and_one_node_then_retrains_nothing(slurm, clone):
    root, train = clone
    env = pipeline_env(slurm)
    start = time.monotonic()
    job = sbatch(env, root, "dvc repro train@baseline-0", root / "job.out")
    seconds = time.monotonic() - start
    out = (root / "job.out").read_text()
    assert job.returncode == 0, out[-4000:]
    assert "Running stage 'train@baseline-0'" in out and "python stages/train.py --variant baseline --seed 0" in out
    assert "train@baseline-0: 2 node(s), head 127.0.0.1:" in out  # SLURM_JOB_NODELIST's first node, its NodeAddr
    for rank, node in enumerate(("n1", "n2")):  # one launcher on each node of the allocation, ranked by SLURM_NODEID
        assert f"train@baseline-0: node {rank} of 2 (SLURM node {node})" in out
    metrics = read_json(root / "data/train/baseline/seed-0/metrics.json")
    assert metrics["world_size"] == 2 and metrics["steps"] == -(-len(train) // 4)
    # the same stage on one node, outside SLURM: dvc.yaml's command does not name the nodes, nothing retrains
    assert "didn't change, skipping" in run(["dvc", "repro", "train@baseline-0"], root)
    print(f"dvc repro train@baseline-0 in a 2-node allocation: {seconds:.0f} s")


def test_port_0_in_a_two_node_allocation_is_refused_in_one_line(slurm, tiny_model, tmp_path):
    _, cmd, env = two_process_run(tiny_model, tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    (tmp_path / "node.yaml").write_text(yaml.safe_dump(NODE_CONFIG))
    params["train"].update(accelerate_config=str(tmp_path / "node.yaml"), main_process_port=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    job = sbatch({**env, **slurm}, REPO, shlex.join(cmd), tmp_path / "job.out")
    assert job.returncode != 0
    assert (tmp_path / "job.out").read_text().strip().splitlines() == [
        "Error: train.main_process_port: 0 lets each of the 2 nodes pick its own free port, so they never meet: set a "
        "fixed port, the same on every node (-S train.main_process_port=29500)"]


def node_launcher(node: str) -> psutil.Process | None:
    """The launcher srun started on SLURM node `node` (a task: stages/train.py outside accelerate)."""
    for p in psutil.process_iter(["cmdline"]):
        try:
            env = p.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
        if (env.get("SLURMD_NODENAME") == node and "SLURM_STEP_ID" in env and "ACCELERATE_MIXED_PRECISION" not in env
                and any(part.endswith("stages/train.py") for part in p.info["cmdline"] or [])):
            return p
    return None


def test_a_node_that_dies_in_the_srun_step_is_named_and_the_rerun_resumes(slurm, tiny_model, tmp_path):
    """Node n2's launcher killed after a checkpoint (its training process dies with it): srun names the node,
    stops n1's task, the stage says so, and the next job resumes from the checkpoint."""
    _, cmd, env = two_process_run(tiny_model, tmp_path, save_steps=2, epochs=3)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    (tmp_path / "node.yaml").write_text(yaml.safe_dump(NODE_CONFIG))
    params["train"].update(accelerate_config=str(tmp_path / "node.yaml"), main_process_port=free_port())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**env, **slurm}
    job = sbatch(env, REPO, shlex.join(cmd), tmp_path / "job.out", wait=False)
    assert job.returncode == 0, job.stderr
    job_id = job.stdout.strip()
    checkpoints = tmp_path / "cache" / "checkpoints"
    deadline = time.monotonic() + 300
    while not any(checkpoints.glob(f"*/checkpoint-*/{CHECKPOINT_COMPLETE}")):
        assert time.monotonic() < deadline, (tmp_path / "job.out").read_text()[-3000:]
        time.sleep(0.05)
    victim = node_launcher("n2")
    assert victim is not None
    victim.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 300
    while subprocess.run(["squeue", "-h", "-j", job_id], env=env, capture_output=True, text=True).stdout.strip():
        assert time.monotonic() < deadline
        time.sleep(0.5)
    out = (tmp_path / "job.out").read_text()
    assert "srun: error: n2: task 1: Killed" in out, out[-3000:]
    assert ("train@baseline-0: the srun step on 2 node(s) ended with exit status 137 (SIGKILL) (srun's lines above "
            "name the node); a rerun resumes from the last complete checkpoint") in out.splitlines(), out[-3000:]
    assert node_launcher("n1") is None and node_launcher("n2") is None

    job = sbatch(env, REPO, shlex.join(cmd), tmp_path / "rerun.out")
    out = (tmp_path / "rerun.out").read_text()
    assert job.returncode == 0, out[-3000:]
    assert "train@baseline-0: resumed from" in out and "on 2 process(es)" in out
