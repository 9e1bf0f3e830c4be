"""Generation throughput: the transformers backend batched vs one conversation at a time, same prompts.

    python bench/generation.py [--model models/base] [--n 32] [--batch-size 32]
    python bench/generation.py --small    # seconds: a tiny random-init model, 4 conversations, 8 new tokens

Prints new tokens per second for each and their ratio, measured in this one run.
"""
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fixtures.tiny_model import make_tiny_model  # noqa: E402
from music_rm.core.params import Sampling, load_params  # noqa: E402
from music_rm.data.sources import fetch  # noqa: E402
from music_rm.generation.generator import Generator  # noqa: E402
from music_rm.generation.request import Request  # noqa: E402
from music_rm.generation.transformers_backend import TransformersBackend  # noqa: E402


def run(backend: TransformersBackend, requests: list[Request]) -> tuple[float, int]:
    generator = Generator(backend)  # no cache: every call reaches the model
    start = time.perf_counter()
    generator.generate(requests, seed=0, desc=f"batch size {backend.batch_size}")
    return time.perf_counter() - start, generator.new_tokens


@click.command()
@click.option("--model", default="models/base", show_default=True)
@click.option("--n", default=32, show_default=True, help="Conversations to answer.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--max-new-tokens", default=64, show_default=True)
@click.option("--dtype", default="bfloat16", show_default=True)
@click.option("--small", is_flag=True, help="A tiny random-init model, 4 conversations, 8 new tokens, float32.")
def main(model, n, batch_size, max_new_tokens, dtype, small):
    work = tempfile.TemporaryDirectory()  # removed when main returns
    if small:
        model = make_tiny_model(Path(work.name))
        n, batch_size, max_new_tokens, dtype = 4, 4, 8, "float32"
    train, test, _ = fetch(load_params(REPO / "params.yaml").fetch.model_copy(update={"source": "embedded"}))
    prompts = [tuple(r["chosen"][:-1]) for r in (train + test)[:n]]
    # Greedy decoding with no early end-of-turn would still differ in length; sampling keeps it realistic.
    requests = [Request(p, Sampling(max_new_tokens=max_new_tokens, temperature=0.7, top_p=0.9)) for p in prompts]
    backend = TransformersBackend(str(model), dtype, batch_size)
    Generator(backend).generate(requests[:2], seed=0, desc="warm-up")
    results = {}
    for size in (batch_size, 1):
        backend.batch_size = size
        seconds, tokens = run(backend, requests)
        results[size] = tokens / seconds
        print(f"batch {size:>3}: {tokens} new tokens in {seconds:.1f} s = {tokens / seconds:.1f} tokens/s")
    print(f"batched / one at a time: {results[batch_size] / results[1]:.2f}x ({len(requests)} conversations, "
          f"{max_new_tokens} new tokens max, {dtype})")


if __name__ == "__main__":
    main()
