"""GPU slots (core/gpu_slots.py): stages run at once on one node each hold their own GPUs; a stage waits while
every slot is taken and gets the slot a stage that died held. Real processes and real file locks; the GPUs are
only names here (CUDA_VISIBLE_DEVICES as the stage sets it). A stage-started vLLM server's port moved by the
slot: tests/test_vllm_server.py."""
import json
import os
import select
import signal
import subprocess
import sys
import time

from music_rm.core.gpu_slots import SLOT_ENV, SLOTS_DIR_ENV, SLOTS_ENV
from tests.conftest import REPO

HOLDER = """
import logging, os, sys
from music_rm.core.gpu_slots import on_gpu_slot
logging.basicConfig(level=logging.INFO, format="%(message)s")

@on_gpu_slot
def stage():
    print(os.environ["CUDA_VISIBLE_DEVICES"], os.environ["MUSIC_GPU_SLOT"], flush=True)
    sys.stdin.readline()  # holds the slot until the test says

stage()
"""


def holder(env):
    return subprocess.Popen([sys.executable, "-c", HOLDER], cwd=REPO, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def line_within(stream, seconds: float) -> str | None:
    ready, _, _ = select.select([stream], [], [], seconds)
    return stream.readline() if ready else None


def test_stages_at_once_hold_their_own_gpus_and_a_third_waits_for_the_slot_of_one_that_died(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k not in (SLOT_ENV, "CUDA_VISIBLE_DEVICES")},
           SLOTS_ENV: "0,1; 2,3", SLOTS_DIR_ENV: str(tmp_path / "slots")}
    first, second = holder(env), holder(env)
    third = None
    try:
        held = [line_within(first.stdout, 60), line_within(second.stdout, 60)]
        assert sorted(held) == ["0,1 0\n", "2,3 1\n"], (held, first.stderr.read() if first.poll() is not None else "")
        third = holder(env)
        assert line_within(third.stderr, 60).strip() == (
            f"waiting for a free GPU slot: all 2 of {SLOTS_ENV}=0,1;2,3 are taken (locks in {tmp_path / 'slots'})")
        assert line_within(third.stdout, 3) is None  # still waiting
        first.send_signal(signal.SIGKILL)  # no clean-up: the kernel drops its lock
        first.wait()
        assert line_within(third.stdout, 30) == held[0]
    finally:
        for p in (first, second, third):
            if p is not None:
                p.kill()
                p.wait()


def test_a_bad_slots_variable_stops_a_stage_in_one_line_before_it_starts():
    env = {**os.environ, SLOTS_ENV: "0,1;1,2"}
    env.pop(SLOT_ENV, None)
    start = time.monotonic()
    result = subprocess.run([sys.executable, "stages/eval.py"], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {SLOTS_ENV}='0,1;1,2': give GPU indices, each in one slot, slots separated by ';' (e.g. 0,1,2,3;4,5,6,7)")
    assert "Traceback" not in result.stderr and time.monotonic() - start < 60


QUEUED_STAGE = """
import json, logging, os, time
import yaml
from music_rm.core.gpu_slots import on_gpu_slot
logging.basicConfig(level=logging.INFO)

@on_gpu_slot
def hold():
    start = time.time()
    time.sleep(4)
    json.dump({"gpus": os.environ["CUDA_VISIBLE_DEVICES"], "start": start, "end": time.time(),
               "x": yaml.safe_load(open("params.yaml"))["x"]}, open("held.json", "w"))

hold()
"""


def test_dvc_queue_workers_at_once_each_hold_their_own_gpus(tmp_path):
    """`dvc queue start -j 2`: the workers inherit one environment (MUSIC_GPU_SLOTS); their stages run at the same
    time on different GPUs."""
    from tests.test_pipeline import walk_experiments

    root = tmp_path / "repo"
    root.mkdir()
    (root / "hold.py").write_text(f"import sys\nsys.path.insert(0, {str(REPO)!r})\n" + QUEUED_STAGE)
    (root / "params.yaml").write_text("x: 0\n")
    (root / "dvc.yaml").write_text(f"stages:\n  hold:\n    cmd: {sys.executable} hold.py\n    deps: [hold.py]\n"
                                   "    params: [x]\n    metrics: [{held.json: {cache: false}}]\n")
    env = {**{k: v for k, v in os.environ.items() if k not in (SLOT_ENV, "CUDA_VISIBLE_DEVICES")},
           SLOTS_ENV: "0,1;2,3", SLOTS_DIR_ENV: str(tmp_path / "slots")}

    def run(*cmd):
        result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    git = ("git", "-c", "user.name=t", "-c", "user.email=t@t")
    run("git", "init", "-q")
    run("dvc", "init", "-q")
    run(*git, "add", "-A")
    run(*git, "commit", "-qm", "init")
    for x in (1, 2):
        run("dvc", "exp", "run", "--queue", "-S", f"x={x}", "-q")
    run("dvc", "queue", "start", "-j", "2")
    deadline = time.monotonic() + 240
    while (status := run("dvc", "queue", "status")).count("Success") < 2:
        assert time.monotonic() < deadline and "Failed" not in status, status
        time.sleep(2)
    shown = json.loads(run("dvc", "exp", "show", "--json"))
    held = [entry["data"]["metrics"]["held.json"]["data"] for entry in walk_experiments(shown)
            if entry.get("name") and "data" in entry["data"]["metrics"].get("held.json", {})]
    assert sorted(h["x"] for h in held) == [1, 2], held
    assert sorted(h["gpus"] for h in held) == ["0,1", "2,3"], held
    first, second = sorted(held, key=lambda h: h["start"])
    assert second["start"] < first["end"], held  # at the same time
