"""The offline vLLM backend on vLLM's CPU build: run by tests/test_vllm_backend.py with the vLLM virtualenv's
Python (PYTHONPATH: the repo), as `python tests/vllm_offline.py '<json arguments>'`; prints what it saw as JSON."""
import json
import sys

from music_rm.core.params import Sampling
from music_rm.generation.generator import Generator
from music_rm.generation.request import Request
from music_rm.generation.vllm_backend import VLLMBackend

SAMPLING = Sampling(max_new_tokens=12, temperature=1.0, top_p=1.0)
ONE_TOKEN = Sampling(max_new_tokens=1, temperature=1.0, top_p=1.0)


def chat(text, system=None):
    return Request(((({"role": "system", "content": system},) if system else ()) + ({"role": "user", "content": text},)),
                   SAMPLING)


def engine_prompt_tokens(backend, request):
    """The prompt as the engine itself tokenized it (vLLM's RequestOutput.prompt_token_ids)."""
    from vllm import SamplingParams

    one = SamplingParams(max_tokens=1)
    out = (backend.llm.generate([request.prefix + request.prompt], one, use_tqdm=False) if request.raw
           else backend.llm.chat([backend._messages(request)], one, use_tqdm=False))
    return len(out[0].prompt_token_ids)


def main(args):
    backend = VLLMBackend(args["model"], revision=None, tensor_parallel_size=1, max_model_len=args["context"],
                          dtype="float32", unit_size=1024, trust_remote_code=False,
                          gpu_memory_utilization=args["memory_share"], **args["engine_args"])
    short = [chat("Say hello.", system="Be brief."), chat("What is a turn?"), Request("Once upon a time", SAMPLING)]
    requests = short + [chat("word " * (2 * args["context"]))]
    generator = Generator(backend)
    first = generator.generate(requests, seed=1)
    seen = {"prompt_tokens": [backend.prompt_tokens(r) for r in short],
            "engine_prompt_tokens": [engine_prompt_tokens(backend, r) for r in short],
            "long_prompt_tokens": backend.prompt_tokens(requests[-1]),
            "first": first, "again": Generator(backend).generate(requests, seed=1),
            "other": Generator(backend).generate(requests, seed=2),
            "too_long": generator.too_long, "context_tokens": backend.context_tokens,
            # one new token: the engine stops at max_tokens (finish_reason "length"), a chat answer and a raw line cut
            "cut": Generator(backend).generate_with_cuts(
                [Request(r.prompt, ONE_TOKEN, prefix=r.prefix) for r in short], seed=1)[1]}
    backend.close()
    print(json.dumps(seen))


if __name__ == "__main__":  # vLLM starts its engine core with multiprocessing's spawn, which re-imports this file
    main(json.loads(sys.argv[1]))
