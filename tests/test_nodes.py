"""The train stage on two nodes rehearsed on this host: dvc.yaml's command with MUSIC_TRAIN_NODES=2 starts two
launchers on 127.0.0.1, each in its own process group as if on its own node, one CPU process each (DDP over
gloo). What a SLURM allocation adds (srun, the head node's address): tests/test_slurm.py."""
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import yaml

from music_rm.core.io import read_json
from music_rm.core.processes import group_members
from music_rm.reward.launch import HEAD_ENV, LAUNCHER_ENV, NODE_ENV, NODES_ENV
from music_rm.reward.train import CHECKPOINT_COMPLETE
from tests.conftest import REPO
from tests.test_ddp import two_process_run

# One node's config: accelerate's torchrun launch with one process (the launcher multiplies by the nodes)
NODE_CONFIG = {"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU", "mixed_precision": "no",
               "num_machines": 1, "num_processes": 1, "machine_rank": 0, "main_training_function": "main"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_node_run(tiny_model, tmp_path, port=None, **config):
    """(the training pairs, dvc.yaml's train command, its environment) for two nodes of one process each."""
    train, cmd, env = two_process_run(tiny_model, tmp_path, **config)
    (tmp_path / "node.yaml").write_text(yaml.safe_dump(NODE_CONFIG))
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train"].update(accelerate_config=str(tmp_path / "node.yaml"),
                           main_process_port=free_port() if port is None else port)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return train, cmd, {**env, NODES_ENV: "2"}


def run(cmd, env, timeout=600):
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_launchers_train_one_model_on_a_world_of_two(tiny_model, tmp_path):
    train, cmd, env = two_node_run(tiny_model, tmp_path)
    result = run(cmd, env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_json(tmp_path / "reports" / "baseline" / "seed-0" / "metrics.json")
    assert summary["world_size"] == 2
    assert summary["steps"] == -(-len(train) // (2 * 2))  # per-device batch 2 × 2 processes, one on each node
    assert summary["pairs_seen"] >= len(train) == summary["distinct_pairs_seen"]
    assert "on 2 process(es)" in result.stdout


def test_port_0_on_two_nodes_is_refused_in_one_line_before_anything_starts(tiny_model, tmp_path):
    _, cmd, env = two_node_run(tiny_model, tmp_path, port=0)
    result = run(cmd, env, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: train.main_process_port: 0 lets each of the 2 nodes pick its own free port, so they never meet: set a "
        "fixed port, the same on every node (-S train.main_process_port=29500)"]
    assert not (tmp_path / "mlflow.db").exists()  # no training process started


def node_launchers(pid: int) -> dict[int, psutil.Process]:
    """{node rank: its launcher} of a run started with MUSIC_TRAIN_NODES (children of the stage's process)."""
    return {int(p.environ()[NODE_ENV].split("/")[0]): p for p in psutil.Process(pid).children()}


def test_a_node_that_dies_ends_the_run_with_a_line_naming_it_and_the_rerun_resumes(tiny_model, tmp_path):
    """Node 1 killed whole (its process group: launcher and training process) after a checkpoint: node 0 is stopped,
    nothing of the run is left, and the rerun resumes and ends with the model and metrics of an uninterrupted run."""
    _, cmd, env = two_node_run(tiny_model, tmp_path, save_steps=2, epochs=3)
    metrics = tmp_path / "reports" / "baseline" / "seed-0" / "metrics.json"
    result = run([*cmd, "--out", str(tmp_path / "rm-reference")],
                 {**env, "MUSIC_CACHE_DIR": str(tmp_path / "cache-reference")})
    assert result.returncode == 0, result.stderr[-3000:]
    reference = metrics.read_bytes()

    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    checkpoints = tmp_path / "cache" / "checkpoints"
    deadline = time.monotonic() + 300
    while not any(checkpoints.glob(f"*/checkpoint-*/{CHECKPOINT_COMPLETE}")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    nodes = node_launchers(proc.pid)
    os.killpg(nodes[1].pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGKILL
    assert (f"train@baseline-0: node 1 of 2 (127.0.0.1, pid {nodes[1].pid}) died (killed by SIGKILL); the other node(s) "
            f"stopped with it; a rerun resumes from the last complete checkpoint") in err.splitlines()
    assert "Traceback" not in err
    assert [group_members(p.pid) for p in nodes.values()] == [[], []]  # nothing of either node is left

    result = run(cmd, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout and "checkpoint-" in result.stdout
    model = "baseline/seed-0/model.safetensors"
    assert (tmp_path / "rm-reference" / model).read_bytes() == (tmp_path / "rm" / model).read_bytes()
    assert metrics.read_bytes() == reference and read_json(metrics)["world_size"] == 2


def test_a_process_whose_peer_died_says_so_in_one_line_without_a_traceback():
    """A real gloo collective whose other process is killed: the survivor's error (its connection reset) is the
    death's effect, said in one line under the launcher (who names the node that died), never as a traceback."""
    script = (
        "import sys, time, torch, torch.distributed as dist\n"
        "from music_rm.reward.launch import training_process\n"
        "rank = int(sys.argv[1])\n"
        "with training_process():\n"
        f"    dist.init_process_group('gloo', init_method='tcp://127.0.0.1:{free_port()}', rank=rank, world_size=2)\n"
        "    dist.barrier()\n"
        "    print('ready', flush=True)\n"
        "    if rank == 1:\n"
        "        time.sleep(600)\n"
        "    dist.all_reduce(torch.ones(1))\n")
    env = {**os.environ, LAUNCHER_ENV: str(os.getpid()), "WORLD_SIZE": "2"}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(rank)], cwd=REPO, env={**env, "RANK": str(rank)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    try:
        assert procs[1].stdout.readline() == "ready\n", procs[1].communicate(timeout=60)[1][-2000:]
        procs[1].kill()
        _, err = procs[0].communicate(timeout=120)
    finally:
        for p in procs:
            p.kill()
    assert procs[0].returncode == 1, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: process 0 of 2 lost its connection to the others ("), err
    assert "Traceback" not in err


def test_nodes_that_do_not_share_the_cache_stop_with_a_line_naming_the_node(tiny_model, tmp_path):
    """Each node's launcher started by hand, as srun starts them, node 1 with a cache of its own (a node-local
    disk): both stop at once with an error instead of waiting at a barrier, and node 0's line names node 1."""
    _, cmd, env = two_node_run(tiny_model, tmp_path, save_steps=2)
    port = yaml.safe_load((tmp_path / "params.yaml").read_text())["train"]["main_process_port"]
    caches = [tmp_path / f"cache-{rank}" for rank in range(2)]
    nodes = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**env, HEAD_ENV: f"127.0.0.1:{port}", NODE_ENV: f"{rank}/2",
                                   "MUSIC_CACHE_DIR": str(caches[rank])}) for rank in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in nodes]
    assert [p.returncode for p in nodes] == [1, 1]
    host = socket.gethostname()
    assert [line for line in errors[0].splitlines() if line.startswith("Error:")] == [
        f"Error: node 1 ({host}) cannot see the cache {caches[0]} that node 0 ({host}) writes to (it looks in "
        f"{caches[1]}): checkpoints and models need one folder every node shares, at the same path (a shared "
        f"filesystem; MUSIC_CACHE_DIR for the cache; docs/cluster.md)"]
    assert "Error:" not in errors[1] and "Traceback" not in errors[0] + errors[1]
    assert not (tmp_path / "rm" / "baseline" / "seed-0").exists()
