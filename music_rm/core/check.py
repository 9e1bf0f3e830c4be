"""What the check stage checks beyond the params model (core/params.py), before DVC touches any stage's outputs:
the inputs params.yaml names, where that is cheap. Each problem is one ParamsError naming the param.

- every file or folder a param names exists, unless a stage of dvc.yaml writes it (data/contrast/test.jsonl as a
  judge pair set);
- a local folder read as a Hub dataset (`fetch.source: hf`, a RewardBench source of kind hf) is also the path
  dvc.yaml makes the stage's dependency (fetch.path, the source's path), or editing one of its files would not
  rerun the stage;
- the environment variables the openai backends name for their keys are set (only whether: a key is never read
  here), and the Python that starts a vLLM server exists;
- train.config.global_batch_size divides over the processes the accelerate config starts.
"""
import os
from pathlib import Path

import yaml

from .errors import ParamsError
from .params import Params


def stage_outputs() -> list[str]:
    """The outputs of dvc.yaml's stages, relative to the repository root (none outside a DVC repository)."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        with Repo(".") as repo:
            return [out.def_path for stage in repo.index.stages for out in stage.outs]
    except NotDvcRepoError:
        return []


def _named_paths(params: Params) -> list[tuple[str, str]]:
    """(param, path) for every input path params.yaml names that a stage reads."""
    p = params
    named = [("train.accelerate_config", p.train.accelerate_config), ("fetch.path", p.fetch.path)]
    named += [(f"train.variants.{name}.pairs", v.pairs) for name, v in p.train.variants.items()]
    named += [(f"judge.pair_sets.{name}", path) for name, path in p.judge.pair_sets.items()]
    named += [(f"best_of_n.prompt_sets.{name}.path", s.path) for name, s in p.best_of_n.prompt_sets.items()]
    named += [(f"mt_bench.sources.{name}.{field}", getattr(s, field)) for name, s in p.mt_bench.sources.items()
              for field in ("questions", "answers", "human", "gpt4")]
    named += [(f"reward_bench.sources.{name}.path", s.path) for name, s in p.reward_bench.sources.items()]
    return named


def _local_hub_folders(params: Params) -> list[tuple[str, str, str, str]]:
    """(param, dataset, path param, path) for each dataset read through `datasets.load_dataset` whose stage's DVC
    dependency is the path param."""
    named = [("fetch.hf_dataset", params.fetch.hf_dataset, "fetch.path", params.fetch.path)] \
        if params.fetch.source == "hf" else []
    return named + [(f"reward_bench.sources.{name}.hf_dataset", s.hf_dataset, f"reward_bench.sources.{name}.path",
                     s.path) for name, s in params.reward_bench.sources.items() if s.kind == "hf"]


def _written_by_a_stage(path: str, outputs: list[str]) -> bool:
    target = Path(os.path.normpath(path))
    return any(target == Path(out) or Path(out) in target.parents for out in outputs)


def _generation_sections(p: Params) -> list[tuple[str, object]]:
    """The generation sections some stage will use: simulate always; the judge with a judge or Best-of-N stage."""
    return [("simulate", p.simulate)] + ([("judge", p.judge)] if p.judge.pair_sets or p.best_of_n.prompt_sets else [])


def _processes(accelerate_config: str) -> int:
    with open(accelerate_config, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    value = config.get("num_processes", 1) if isinstance(config, dict) else 1
    return value if isinstance(value, int) and value > 0 else 1


def check_inputs(params: Params, where: str) -> None:
    """Raise ParamsError (prefixed with `where`, the params file) for the first problem the module docstring lists."""
    outputs = None
    for param, path in _named_paths(params):
        if not os.path.exists(path):
            outputs = stage_outputs() if outputs is None else outputs
            if not _written_by_a_stage(path, outputs):
                why = (" (fetch's DVC dependency whatever fetch.source: name a file that exists)"
                       if param == "fetch.path" and params.fetch.source != "path" else "")
                raise ParamsError(f"{where}: {param}: {path!r}: no such file or folder, and no stage writes it{why}")
    for param, dataset, path_param, path in _local_hub_folders(params):
        if os.path.isdir(dataset) and os.path.realpath(dataset) != os.path.realpath(path):
            stage = "fetch" if param.startswith("fetch.") else "its stage"
            raise ParamsError(f"{where}: {param}: {dataset!r} is a local folder, which DVC tracks only as {path_param} "
                              f"({stage}'s dependency): set {path_param} to the same folder, so that editing its files "
                              f"reruns {stage}")
    for section, g in _generation_sections(params):
        if g.backend == "openai" and g.openai.api_key_env and not os.environ.get(g.openai.api_key_env):
            raise ParamsError(f"{where}: {section}.openai.api_key_env: the environment variable "
                              f"{g.openai.api_key_env} is not set")
        if g.backend == "openai" and g.openai.start_vllm and g.vllm.python and not os.path.exists(g.vllm.python):
            raise ParamsError(f"{where}: {section}.vllm.python: {g.vllm.python!r}: no such file (`make vllm` builds "
                              ".venv-vllm)")
    try:
        params.train.config.accumulation(_processes(params.train.accelerate_config))
    except ParamsError as e:
        raise ParamsError(f"{where}: {e}") from None
