"""Generation throughput on the same prompts, in one run: the transformers backend batched and one conversation
at a time, and vLLM's OpenAI server (here its CPU build) through the openai backend, started and stopped by the
bench as a stage with `openai.start_vllm` starts and stops it.

    python bench/generation.py [--model models/base] [--n 64] [--batch-size 32] [--concurrency 64] \
        [--vllm-python .venv-vllm/bin/python]
    python bench/generation.py --small    # a tiny random-init model, 4 conversations, 8 new tokens; vLLM (eager,
                                          # about 30 s) when MUSIC_VLLM_PYTHON or --vllm-python names one

Prints new tokens per second for each and their ratios, measured in this one run with one seed. The server's
start-up is timed apart and not counted in its tokens/s.
"""
import socket
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fixtures.tiny_model import make_tiny_model  # noqa: E402
from music_rm.core.params import Sampling, SimulateParams, load_params, merge  # noqa: E402
from music_rm.data.sources import fetch  # noqa: E402
from music_rm.generation.backends import make_backend  # noqa: E402
from music_rm.generation.generator import Generator  # noqa: E402
from music_rm.generation.request import Request  # noqa: E402
from music_rm.generation.transformers_backend import TransformersBackend  # noqa: E402

# vLLM 0.32's CPU build: a seeded request kills the engine under chunked prefill ("CPU Generator does not use offset")
CPU_SERVER_ARGS = ["--no-enable-chunked-prefill", "--max-num-batched-tokens", "65536"]


def timed(generator: Generator, requests: list[Request], desc: str) -> tuple[float, int]:
    """Seconds and new tokens to answer `requests` (seed 0) on a generator without a cache."""
    before = generator.new_tokens
    start = time.perf_counter()
    generator.generate(requests, seed=0, desc=desc)
    return time.perf_counter() - start, generator.new_tokens - before


def report(name: str, seconds: float, tokens: int) -> float:
    print(f"{name:<28} {tokens:>6} new tokens in {seconds:6.1f} s = {tokens / seconds:6.1f} tokens/s")
    return tokens / seconds


def vllm_server_params(simulate: SimulateParams, python: str, dtype: str, concurrency: int, port: int,
                       memory_share: float, eager: bool) -> SimulateParams:
    """simulate's params with the openai backend on a vLLM server the backend starts at 127.0.0.1:`port`."""
    return SimulateParams.model_validate(merge(simulate.model_dump(), {
        "backend": "openai", "dtype": dtype,
        "openai": {"base_url": f"http://127.0.0.1:{port}/v1", "model": "bench", "api_key_env": None,
                   "concurrency": concurrency, "start_vllm": True},
        "vllm": {"python": python, "data_parallel_size": 1, "gpu_memory_utilization": memory_share,
                 "server_args": CPU_SERVER_ARGS + (["--enforce-eager"] if eager else [])}}))


@click.command()
@click.option("--model", default="models/base", show_default=True)
@click.option("--n", default=64, show_default=True, help="Conversations to answer.")
@click.option("--batch-size", default=32, show_default=True, help="The transformers backend's batch.")
@click.option("--max-new-tokens", default=64, show_default=True)
@click.option("--dtype", default="bfloat16", show_default=True, help="Of both engines.")
@click.option("--concurrency", default=64, show_default=True, help="Requests in flight to the vLLM server.")
@click.option("--vllm-python", envvar="MUSIC_VLLM_PYTHON", show_envvar=True, default=None,
              help="The Python of a virtualenv with vLLM (make vllm); without it the vLLM run is left out.")
@click.option("--memory-share", default=0.1, show_default=True,
              help="vLLM's gpu_memory_utilization: on its CPU build, the share of the machine's memory it reserves.")
@click.option("--port", default=8011, show_default=True, help="The vLLM server's port on 127.0.0.1.")
@click.option("--one-at-a-time/--no-one-at-a-time", default=True, show_default=True,
              help="Also time the transformers backend one conversation at a time (the slowest run).")
@click.option("--eager", is_flag=True, help="vLLM without compilation (starts faster, may generate slower).")
@click.option("--small", is_flag=True, help="A tiny random-init model (head size 32, which vLLM's CPU attention"
                                            " takes), 4 conversations, 8 new tokens, float32, vLLM eager on a free"
                                            " port.")
def main(model, n, batch_size, max_new_tokens, dtype, concurrency, vllm_python, memory_share, port, one_at_a_time,
         eager, small):
    work = tempfile.TemporaryDirectory()  # removed when main returns
    if small:
        model = make_tiny_model(Path(work.name), hidden=64, heads=2)
        n, batch_size, max_new_tokens, dtype, eager = 4, 4, 8, "float32", True
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    params = load_params(REPO / "params.yaml")
    train, test, _ = fetch(params.fetch.model_copy(update={"source": "embedded"}))
    prompts = [tuple(r["chosen"][:-1]) for r in (train + test)[:n]]
    # Greedy decoding with no early end-of-turn would still differ in length; sampling keeps it realistic.
    requests = [Request(p, Sampling(max_new_tokens=max_new_tokens, temperature=0.7, top_p=0.9)) for p in prompts]
    print(f"{len(requests)} conversations, {max_new_tokens} new tokens max, temperature 0.7, top_p 0.9, seed 0, "
          f"{dtype}")

    backend = TransformersBackend(str(model), dtype, batch_size)
    generator = Generator(backend)  # no cache: every call reaches the model
    generator.generate(requests[:2], seed=0, desc="warm-up")
    batched = report(f"transformers, batch {batch_size}", *timed(generator, requests, f"batch {batch_size}"))
    if one_at_a_time:
        backend.batch_size = 1
        one = report("transformers, batch 1", *timed(generator, requests, "batch 1"))
        print(f"batched / one at a time: {batched / one:.2f}x")

    if not vllm_python:
        print("vLLM: not run (no --vllm-python / MUSIC_VLLM_PYTHON)")
        return
    p = vllm_server_params(params.simulate, vllm_python, dtype, concurrency, port, memory_share, eager)
    start = time.perf_counter()
    with Generator(make_backend(p, str(model), params.base.trust_remote_code)) as served:
        print(f"vLLM server (CPU build, {'eager' if eager else 'compiled'}) ready in "
              f"{time.perf_counter() - start:.0f} s")
        served.generate(requests[:2], seed=1, desc="warm-up")
        vllm = report(f"vLLM server, {min(concurrency, len(requests))} in flight", *timed(served, requests, "vLLM"))
    print(f"vLLM server / transformers batched: {vllm / batched:.2f}x")


if __name__ == "__main__":
    main()
