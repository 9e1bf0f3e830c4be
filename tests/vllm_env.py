"""Real vLLM for the tests: the CPU build in its own virtualenv (`make vllm`; `make test` makes it and passes its
Python as MUSIC_VLLM_PYTHON), and a tiny model it can load."""
import os
import socket
from pathlib import Path

import pytest

from fixtures.tiny_model import GEMMA2_TEMPLATE, make_tiny_model, make_tokenizer
from tests.conftest import REPO

# vLLM 0.32's CPU build: a seeded request kills the engine under chunked prefill ("CPU Generator does not use
# offset"); eager mode starts faster than compiling (measured: 95 s to /health for SmolLM2-135M on 2 cores).
CPU_SERVER_ARGS = ["--no-enable-chunked-prefill", "--max-num-batched-tokens", "65536", "--enforce-eager"]
CPU_ENGINE_ARGS = {"enable_chunked_prefill": False, "max_num_batched_tokens": 65536, "enforce_eager": True}
# On the CPU build `gpu_memory_utilization` is the share of the machine's memory the engine reserves
# (vllm/v1/worker/cpu_worker.py); 0.1 of this machine's 17.5 GiB NUMA node leaves 0.6 GiB of KV cache.
CPU_MEMORY_SHARE = 0.1
CONTEXT = 256  # max_model_len of the test engines: a prompt of a few hundred words is over it


def vllm_python() -> str:
    """The vLLM virtualenv's Python; a skip only where no one asked for vLLM (make test always does)."""
    asked = os.environ.get("MUSIC_VLLM_PYTHON")
    path = asked or str(REPO / ".venv-vllm" / "bin" / "python")
    if not Path(path).exists():
        if asked:
            pytest.fail(f"MUSIC_VLLM_PYTHON={asked} does not exist (make vllm)")
        pytest.skip("no vLLM virtualenv at .venv-vllm (make vllm) and MUSIC_VLLM_PYTHON is not set")
    return path


def make_vllm_model(path: Path) -> Path:
    """A random-init Llama vLLM's CPU attention takes (head size 32: it has kernels for 32, 64, ...) with
    Gemma-2-9b-it's chat template, which raises on a system message."""
    make_tiny_model(path, arch="llama", hidden=64, heads=2)
    make_tokenizer(GEMMA2_TEMPLATE).save_pretrained(path)  # same vocabulary, Gemma-2's template and turn end
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tagged_processes(tag: str) -> list[int]:
    """Processes whose environment holds MUSIC_TEST_TAG=tag: a server, its engine cores and workers inherit it."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if f"MUSIC_TEST_TAG={tag}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                pass
    return found
