"""profiles/paper-rehearsal.yaml: the paper profile with only what cannot run here swapped, run by DVC in a clean
clone with its real engines (vLLM's CPU build as a data-parallel server and as the judge's server, 2-process DDP)."""
import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from music_rm.core.params import apply_profile, validate
from tests import benchmark_files
from tests.conftest import REPO, SHARED
from tests.test_pipeline import copy_sources, run
from tests.vllm_env import tagged_processes, vllm_python

# The keys the rehearsal may set apart from paper.yaml, by why (dotted prefixes; anything under one counts).
SWAPPED = {
    "model ids": ["base.source", "base.model_id", "simulate.openai.model", "simulate.vllm.model",
                  "judge.openai.model"],
    "data sources (local files for the Hub)": ["fetch.hf_dataset", "fetch.path", "fetch.hf_split", "fetch.format",
                                               "best_of_n.prompt_sets", "mt_bench.sources",
                                               "reward_bench.sources"],
    "endpoints (local servers for remote APIs)": ["simulate.openai.base_url", "simulate.vllm.python",
                                                  "simulate.vllm.server_args", "judge.openai.base_url",
                                                  "judge.openai.api_key_env"],
    "counts": ["fetch.limit", "fetch.test_fraction", "simulate.train_prompts", "simulate.test_prompts",
               "simulate.openai.concurrency", "train.config.max_steps", "train.config.global_batch_size",
               "best_of_n.n", "mt_bench.limit", "reward_bench.limit"],
    "sizes": ["simulate.assistant.max_new_tokens", "simulate.user.max_new_tokens",
              "simulate.rewriter.max_new_tokens", "simulate.vllm.gpu_memory_utilization",
              "simulate.vllm.data_parallel_size", "judge.sampling.max_new_tokens", "best_of_n.policy.max_new_tokens",
              "train.config.max_length", "eval.max_length", "best_of_n.max_length", "mt_bench.max_length",
              "reward_bench.max_length"],
    "the hardware": ["train.accelerate_config", "eval.cpu_dtype"],
}
STAGES = {"check_params", "base_model", "fetch", "simulate", "decontaminate", "contrast",
          "pairs@baseline", "pairs@music", "pairs@volume_matched",
          "train@baseline-0", "train@music-0", "train@volume_matched-0", "eval",
          "judge@music", "best_of_n@hh", "mt_bench@shared", "reward_bench@llmbar", "reward_bench@reward_bench_2",
          "reward_bench@rm_bench", "reward_bench@rmb"}


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def profile(name: str) -> dict:
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    applied = apply_profile(base, yaml.safe_load((REPO / "profiles" / f"{name}.yaml").read_text()), name)
    validate(applied, name)
    return flat(applied)


def test_the_rehearsal_differs_from_the_paper_profile_only_in_the_swapped_keys():
    paper, rehearsal = profile("paper"), profile("paper-rehearsal")
    allowed = [prefix for prefixes in SWAPPED.values() for prefix in prefixes]
    swapped = lambda key: any(key == p or key.startswith(p + ".") for p in allowed)
    different = {k for k in paper.keys() | rehearsal.keys() if paper.get(k, "<absent>") != rehearsal.get(k, "<absent>")}
    assert sorted(k for k in different if not swapped(k)) == []
    # the engines are the paper's: a data-parallel vLLM server that the stage starts, an OpenAI-style judge
    assert rehearsal["simulate.backend"] == paper["simulate.backend"] == "openai"
    assert rehearsal["simulate.openai.start_vllm"] is paper["simulate.openai.start_vllm"] is True
    assert rehearsal["simulate.vllm.data_parallel_size"] == 2 and rehearsal["judge.backend"] == "openai"
    assert "deepspeed" not in rehearsal["train.accelerate_config"]  # ZeRO-3 needs DeepSpeed on GPUs: docs/gpu.md


@pytest.mark.integration
@pytest.mark.skipif(not os.environ.get("MUSIC_REHEARSAL"), reason="set MUSIC_REHEARSAL=1 (`make test` does)")
def test_dvc_repro_of_the_rehearsal_in_a_clean_clone_runs_every_stage(tmp_path, monkeypatch, report):
    python = vllm_python()
    if not (SHARED / "data").is_dir():
        pytest.skip(f"{SHARED}/data is not present")
    root = tmp_path / "music-rm"
    root.mkdir()
    (tmp_path / "shared").symlink_to(SHARED)  # ${REPO}/../shared, as beside the real checkout
    benchmark_files.write_all(tmp_path / "benchmarks")  # ${REPO}/../benchmarks: RewardBench 2, RM-Bench, RMB
    copy_sources(root)
    (root / ".venv-vllm").symlink_to(Path(python).parent.parent)  # what `make vllm` makes in the checkout
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    run([sys.executable, "-m", "music_rm", "profile", "profiles/paper-rehearsal.yaml"], root)
    tag = uuid.uuid4().hex
    monkeypatch.setenv("MUSIC_TEST_TAG", tag)  # inherited by DVC, its stages and every vLLM process they start
    start = time.monotonic()
    run(["dvc", "repro", "base_model"], root)
    from music_rm.core.params import load_params
    from music_rm.generation.vllm_server import VLLMServer

    judge = load_params(root / "params.yaml").judge  # the judge's server, started by hand as docs/gpu.md says
    judge = judge.model_copy(update={"openai": judge.openai.model_copy(update={"start_vllm": True}),
                                     "vllm": judge.vllm.model_copy(update={
                                         "python": python, "gpu_memory_utilization": 0.1,
                                         "server_args": ["--no-enable-chunked-prefill", "--max-num-batched-tokens",
                                                         "65536", "--enforce-eager"]})})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MUSIC_CACHE_DIR", str(tmp_path / "cache"))
        server = VLLMServer(judge, str(root / "models" / "base"), trust_remote_code=False)
    with server:
        out = run(["dvc", "repro"], root, timeout=3600)
    report(f"dvc repro of profiles/paper-rehearsal.yaml in a clean clone: {time.monotonic() - start:.0f} s")
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran | {"check_params", "base_model"} == STAGES, out  # both ran in `dvc repro base_model`
    # trained under cpu_ddp.yaml: 2 processes
    assert json.loads((root / "data/train/music/seed-0/metrics.json").read_text())["world_size"] == 2
    simulate = json.loads((root / "data/simulate/summary.json").read_text())
    assert simulate["seed_prompts"] == 8 and simulate["trees"] > 0, simulate
    # no vLLM server, engine or worker left behind: engines outside the server's process group exit on their own
    # once it is gone (a fresh-clone CI run found 2 still exiting right after the judge's server stopped)
    deadline = time.monotonic() + 60
    while tagged_processes(tag) and time.monotonic() < deadline:
        time.sleep(1)
    assert tagged_processes(tag) == []
