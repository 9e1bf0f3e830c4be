"""vLLM's OpenAI server (the CPU build) through the openai backend: started by the stage or by the tests, stopped
by them; seeds, a template without a system role, and prompts over the context."""
import copy
import json
import os
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import pytest
import yaml

from music_rm.core.gpu_slots import SLOTS_DIR_ENV, SLOTS_ENV, slot_held
from music_rm.core.io import read_json, write_jsonl
from music_rm.core.params import Sampling
from music_rm.data.sources import fetch
from music_rm.generation.backends import make_backend
from music_rm.generation.generator import TOO_LONG, Generator
from music_rm.generation.openai_backend import APIError
from music_rm.generation.request import Request
from music_rm.generation.vllm_server import VLLMServer
from tests.conftest import REPO, params_section, repo_params
from tests.test_sources import params as fetch_params
from tests.vllm_env import (CONTEXT, CPU_MEMORY_SHARE, CPU_SERVER_ARGS, free_port, make_vllm_model, tagged_processes,
                            vllm_python)

SAMPLING = Sampling(max_new_tokens=12, temperature=1.0, top_p=1.0)
LONG = "word " * (2 * CONTEXT)  # tokenizes to more than CONTEXT tokens


def served_section(model_name: str, port: int, python: str, **openai):
    """simulate's params with the openai backend on a vLLM server that the stage starts at `port`."""
    return dict(backend="openai", dtype="float32",
                openai={"base_url": f"http://127.0.0.1:{port}/v1", "model": model_name, "api_key_env": None,
                        "concurrency": 4, "timeout_s": 120, "max_attempts": 2, "system_role": False,
                        "start_vllm": True, **openai},
                vllm={"python": python, "max_model_len": CONTEXT, "gpu_memory_utilization": CPU_MEMORY_SHARE,
                      "server_args": CPU_SERVER_ARGS, "startup_timeout_s": 900})


@pytest.fixture(scope="module")
def vllm_model(tmp_path_factory):
    return make_vllm_model(tmp_path_factory.mktemp("vllm-model"))


# A stage in miniature: starts the server, says so, and waits to be killed.
STAGE = """import json, sys
from music_rm.core.params import SimulateParams
from music_rm.generation.vllm_server import VLLMServer
server = VLLMServer(SimulateParams.model_validate(json.loads(sys.argv[1])), sys.argv[2], trust_remote_code=False)
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def server(vllm_model, tmp_path_factory):
    """One server for the module (start-up is the slow part), started by a stage-like process; the last test
    SIGKILLs that process."""
    p = params_section("simulate", **served_section("tiny", free_port(), vllm_python()))
    tag, folder = uuid.uuid4().hex, tmp_path_factory.mktemp("stage")
    env = {**os.environ, "MUSIC_TEST_TAG": tag, "MUSIC_CACHE_DIR": str(folder)}  # the server's log goes there
    start = time.monotonic()
    with open(folder / "stderr.txt", "w") as stderr:
        stage = subprocess.Popen([sys.executable, "-c", STAGE, json.dumps(p.model_dump()), str(vllm_model)], cwd=REPO,
                                 env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
    ready = stage.stdout.readline().strip() == "ready"
    assert ready, (folder / "stderr.txt").read_text()[-3000:]
    yield SimpleNamespace(params=p, stage=stage, tag=tag, startup_s=time.monotonic() - start)
    stage.kill()
    stage.wait()


def backend(server, **openai):
    p = server.params.model_copy(update={"openai": server.params.openai.model_copy(
        update={"start_vllm": False, **openai})})
    return make_backend(p, "unused: the server is running", trust_remote_code=False)


def chat(text: str, system: str | None = None) -> Request:
    return Request(((({"role": "system", "content": system},) if system else ())
                    + ({"role": "user", "content": text},)), SAMPLING)


def test_the_same_seed_gives_the_same_text_and_another_seed_another(server, report):
    report(f"vLLM CPU server start-up (tiny model, eager): {server.startup_s:.0f} s")
    requests = [chat(f"Question {i}: what is a turn?") for i in range(4)]
    first = Generator(backend(server)).generate(requests, seed=1)
    again = Generator(backend(server)).generate(requests, seed=1)
    other = Generator(backend(server)).generate(requests, seed=2)
    assert all(first) and first == again
    assert other != first


def test_a_template_without_a_system_role_gets_the_system_message_folded(server):
    request = chat("Say hello.", system="Be brief.")
    [text] = Generator(backend(server, system_role=False)).generate([request], seed=3)
    assert text
    # sent as it is, the system message makes Gemma-2's template raise: an HTTP 400 that is not about length
    with pytest.raises(APIError, match="HTTP 400 .not retried.*System role not supported"):
        Generator(backend(server, system_role=True)).generate([request], seed=3)


def test_a_prompt_over_the_context_is_counted_and_the_others_are_answered(server):
    generator = Generator(backend(server))
    requests = [chat("Short question one."), chat(LONG), chat("Short question two.")]
    outputs, reasons, retried, _ = generator.generate_checked(requests, lambda i, t: (t, None), ("x",), retries=2)
    assert outputs[0] and outputs[2] and outputs[1] is None
    assert reasons == [None, TOO_LONG, None] and not retried
    assert generator.too_long == 1  # by the server's HTTP 400: the openai backend has no tokenizer to measure with


def test_a_second_server_at_a_taken_address_is_refused(server):
    with pytest.raises(Exception, match="already answers at"):
        VLLMServer(server.params, "unused", trust_remote_code=False)


def test_simulate_starts_its_server_counts_a_long_prompt_and_leaves_no_vllm_process(vllm_model, tmp_path, report):
    rows, _, _ = fetch(fetch_params())
    long = copy.deepcopy(rows[3])
    for branch in ("chosen", "rejected"):
        long[branch][0]["content"] = "word " * 3000  # over 2048 tokens
    write_jsonl(tmp_path / "data" / "train.jsonl", [*rows[:3], {**long, "id": "long"}])
    write_jsonl(tmp_path / "data" / "test.jsonl", [])
    # in GPU slot 1 (slot 0 is held here): its server listens one port above the configured one
    port = free_port()
    section = served_section("tiny", port - 1, vllm_python())
    section["vllm"]["max_model_len"] = 2048  # room for the few-shot user simulator's prompt
    params = repo_params(simulate={**section, "turns": 2,
                                   "train_prompts": None, "test_prompts": None, "max_retries": 0})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    tag = uuid.uuid4().hex
    env = {**os.environ, "MUSIC_TEST_TAG": tag, "MUSIC_CACHE_DIR": str(tmp_path / "cache"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", SLOTS_ENV: "0;1",
           SLOTS_DIR_ENV: str(tmp_path / "slots")}
    start = time.monotonic()
    with slot_held(["0", "1"], tmp_path / "slots"):
        result = subprocess.run([sys.executable, "stages/simulate.py", "--params", str(tmp_path / "params.yaml"),
                                 "--data", str(tmp_path / "data"), "--model", str(vllm_model), "--out",
                                 str(tmp_path / "out")], cwd=REPO, env=env, capture_output=True, text=True)
    report(f"simulate with a stage-started vLLM server (tiny model, 4 prompts, 2 turns): {time.monotonic() - start:.0f} s")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GPU slot 1 (of 2, counted from 0): CUDA_VISIBLE_DEVICES=1" in result.stderr and f"--port {port} " in result.stderr
    written = "".join(f.read_text() for f in (tmp_path / "out").rglob("*") if f.is_file())
    assert f"127.0.0.1:{port - 1}/v1" in written and f"127.0.0.1:{port}/" not in written  # the configured URL
    summary = read_json(tmp_path / "out" / "summary.json")
    assert summary["dropped_by_reason"].get(TOO_LONG) == 1, json.dumps(summary)
    assert summary["seed_prompts"] == 4 and summary["trees"] + summary["dropped"] == 4
    assert tagged_processes(tag) == []  # the API server, its engine core and its worker are gone


def test_a_killed_stage_takes_its_server_with_it(server):
    """Last in the module: SIGKILL leaves the stage no chance to clean up; the kernel's PR_SET_PDEATHSIG does."""
    assert tagged_processes(server.tag)  # the server, its engine core and worker
    server.stage.kill()
    server.stage.wait()
    deadline = time.monotonic() + 120
    while tagged_processes(server.tag) and time.monotonic() < deadline:
        time.sleep(1)
    assert tagged_processes(server.tag) == []


def test_stop_returns_once_every_process_of_the_servers_group_is_gone():
    """A server's engines are children in its process group; SIGKILL takes a moment to finish them, and stop()
    returns only after (the rehearsal found two engine processes alive right after stop() without this)."""
    from music_rm.core.processes import group_members

    server = VLLMServer.__new__(VLLMServer)
    server.process = subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 60 & sleep 60 & wait"],
                                      start_new_session=True)
    time.sleep(0.5)
    assert len(group_members(server.process.pid)) == 3
    server.stop(grace_s=2)
    assert group_members(server.process.pid) == []
