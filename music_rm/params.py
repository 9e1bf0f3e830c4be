"""Typed views of params.yaml sections, validated once when a stage starts."""
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ParamsError(ValueError):
    pass


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ParamsError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(values.keys() - known.keys())
    if unknown:
        raise ParamsError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    kwargs = {}
    for name, f in known.items():
        if name not in values:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ParamsError(f"{where}: missing key '{name}'")
            continue
        value = values[name]
        sub = f.metadata.get("section")
        if sub is not None:
            value = _build(sub, value, f"{where}.{name}")
        kwargs[name] = value
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check:
        problem = check()
        if problem:
            raise ParamsError(f"{where}: {problem}")
    return obj


def _choice(value, name, options):
    return None if value in options else f"{name} must be one of {list(options)}, got {value!r}"


@dataclass(frozen=True)
class BaseParams:
    source: str
    wheel: str
    wheel_sha256: str
    gguf_file: str
    model_id: str
    revision: str
    trust_remote_code: bool = False

    def check(self):
        return _choice(self.source, "source", ("embedded", "hub"))


@dataclass(frozen=True)
class FetchParams:
    source: str
    path: str
    format: str
    hf_dataset: str
    hf_revision: str
    hf_split: str
    limit: int | None
    test_fraction: float
    on_invalid: str
    max_message_chars: int = 50_000

    def check(self):
        if not 0 < self.test_fraction < 1:
            return f"test_fraction must be in (0, 1), got {self.test_fraction}"
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            return f"limit must be a positive integer or null, got {self.limit!r}"
        if not isinstance(self.max_message_chars, int) or self.max_message_chars < 1:
            return f"max_message_chars must be a positive integer, got {self.max_message_chars!r}"
        return (_choice(self.source, "source", ("embedded", "path", "hf"))
                or _choice(self.format, "format", ("auto", "schema", "hh"))
                or _choice(self.on_invalid, "on_invalid", ("fail", "skip")))


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float
    top_p: float = 1.0

    def check(self):
        if self.max_new_tokens < 1:
            return "max_new_tokens must be >= 1"
        if self.temperature < 0:
            return "temperature must be >= 0 (0 = greedy)"


@dataclass(frozen=True)
class VLLMParams:
    model: str | None = None  # a Hub id; null: the base model folder
    revision: str | None = None
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    unit_size: int = 1024
    gpu_memory_utilization: float = 0.9


@dataclass(frozen=True)
class OpenAIParams:
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    api_key_env: str | None = "OPENAI_API_KEY"  # the variable's name; the key itself never goes in params
    concurrency: int = 8
    timeout_s: float = 60.0
    max_attempts: int = 6


@dataclass(frozen=True)
class SimulateParams:
    turns: int
    seed: int
    batch_size: int
    dtype: str
    max_retries: int
    context_messages: int
    context_chars: int
    assistant: Sampling = field(metadata={"section": Sampling})
    user: Sampling = field(metadata={"section": Sampling})
    rewriter: Sampling = field(metadata={"section": Sampling})
    limit: int | None = None
    cache: bool = True
    backend: str = "transformers"
    system_role: bool = True  # false: the assistant's instructions go ahead of the first user message (Gemma-2)
    vllm: VLLMParams = field(default_factory=VLLMParams, metadata={"section": VLLMParams})
    openai: OpenAIParams = field(default_factory=OpenAIParams, metadata={"section": OpenAIParams})

    def check(self):
        if self.turns < 1:
            return f"turns must be >= 1, got {self.turns}"
        return (_choice(self.dtype, "dtype", ("float32", "bfloat16", "float16"))
                or _choice(self.backend, "backend", ("transformers", "vllm", "openai")))


@dataclass(frozen=True)
class ContrastParams:
    turns: int
    seed: int = 0  # draws the volume-matched control set


@dataclass(frozen=True)
class TrainConfig:
    seed: int
    max_length: int
    epochs: float
    batch_size: int
    grad_accum: int
    learning_rate: float
    bf16: bool
    gradient_checkpointing: bool
    warmup_steps: float = 0  # an int counts steps; a float in (0, 1) is a share of all steps
    logging_steps: int = 1
    attn_implementation: str | None = None  # null: transformers' default; Gemma-2 needs eager or flash_attention_2
    truncation: str = "drop"  # drop | truncate_oldest: a pair over max_length
    group_by_length: bool = True  # batches of similar lengths: less padding
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs)
    global_batch_size: int | None = None  # pairs per optimizer step; grad_accum is then computed from the world size
    save_steps: int | None = None  # checkpoint every N steps (kept outside DVC outputs), resumed after a crash
    lora_r: int | None = None  # LoRA rank; null: full fine-tuning
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | list = "all-linear"

    def check(self):
        return _choice(self.truncation, "truncation", ("drop", "truncate_oldest"))

    def accumulation(self, world_size: int) -> int:
        """Gradient accumulation steps: `grad_accum`, or what `global_batch_size` needs at this world size."""
        if self.global_batch_size is None:
            return self.grad_accum
        per_step = self.batch_size * world_size
        if self.global_batch_size % per_step:
            raise ParamsError(f"train.config.global_batch_size={self.global_batch_size} is not a multiple of "
                              f"batch_size × processes = {self.batch_size} × {world_size}")
        return self.global_batch_size // per_step


@dataclass(frozen=True)
class Variant:
    pairs: str


@dataclass(frozen=True)
class TrainParams:
    accelerate_config: str
    config: TrainConfig = field(metadata={"section": TrainConfig})
    variants: dict = field(default_factory=dict)

    def variant(self, name: str) -> Variant:
        if name not in self.variants:
            raise ParamsError(f"train.variants: no variant {name!r}; defined: {sorted(self.variants)}")
        return _build(Variant, self.variants[name], f"train.variants.{name}")


@dataclass(frozen=True)
class EvalParams:
    batch_size: int
    bootstrap_resamples: int = 1000  # for the 95% confidence intervals
    seed: int = 0


@dataclass(frozen=True)
class JudgeParams:
    """The LLM judge: generation fields as in simulate (make_backend reads backend, dtype, batch_size, vllm, openai)."""
    backend: str = "transformers"  # transformers: the base model (a small local judge) | vllm | openai
    dtype: str = "bfloat16"
    batch_size: int = 8
    sampling: Sampling = field(default_factory=lambda: Sampling(max_new_tokens=4, temperature=0.0),
                               metadata={"section": Sampling})
    vllm: VLLMParams = field(default_factory=VLLMParams, metadata={"section": VLLMParams})
    openai: OpenAIParams = field(default_factory=OpenAIParams, metadata={"section": OpenAIParams})
    limit: int | None = None  # first N held-out MUSIC pairs
    seed: int = 0
    bootstrap_resamples: int = 1000
    cache: bool = True

    def check(self):
        return (_choice(self.dtype, "dtype", ("float32", "bfloat16", "float16"))
                or _choice(self.backend, "backend", ("transformers", "vllm", "openai")))


@dataclass(frozen=True)
class MTBenchSource:
    questions: str  # MT-Bench question.jsonl
    answers: str    # folder of model_answer/<model>.jsonl
    human: str      # mt_bench_human_judgments human.jsonl
    gpt4: str       # mt_bench_human_judgments gpt4_pair.jsonl


@dataclass(frozen=True)
class MTBenchParams:
    batch_size: int = 8
    max_length: int | None = 1024  # a longer conversation keeps its last tokens
    bootstrap_resamples: int = 1000
    seed: int = 0
    sources: dict = field(default_factory=dict)

    def source(self, name: str) -> MTBenchSource:
        if name not in self.sources:
            raise ParamsError(f"mt_bench.sources: no source {name!r}; defined: {sorted(self.sources)}")
        return _build(MTBenchSource, self.sources[name], f"mt_bench.sources.{name}")


@dataclass(frozen=True)
class RewardBenchFile:
    path: str                  # a RewardBench-schema file or folder, or LLMBar's folder
    format: str = "reward_bench"  # reward_bench | llmbar

    def check(self):
        return _choice(self.format, "format", ("reward_bench", "llmbar"))


@dataclass(frozen=True)
class RewardBenchHub:
    hf_dataset: str = "allenai/reward-bench"
    hf_revision: str = "main"  # the commit the Hub resolved is recorded in metrics.json
    hf_split: str = "filtered"


@dataclass(frozen=True)
class RewardBenchParams:
    batch_size: int = 8
    max_length: int | None = 2048  # a longer pair keeps its last tokens (the judged answer)
    bootstrap_resamples: int = 1000
    seed: int = 0
    files: dict = field(default_factory=dict)  # name: RewardBenchFile; one reward_bench_file@name stage each
    hub: dict = field(default_factory=dict)    # name: RewardBenchHub; one reward_bench_hub@name stage each

    def source(self, kind: str, name: str) -> "RewardBenchFile | RewardBenchHub":
        """The entry `name` of `files` (kind "file") or of `hub` (kind "hub")."""
        key, entries, cls = ("files", self.files, RewardBenchFile) if kind == "file" else ("hub", self.hub, RewardBenchHub)
        if name not in entries:
            raise ParamsError(f"reward_bench.{key}: no source {name!r}; defined: {sorted(entries)}")
        return _build(cls, entries[name], f"reward_bench.{key}.{name}")


@dataclass(frozen=True)
class BestOfNParams:
    """Multi-turn Best-of-N: the policy and user simulator are simulate's generator; the judge is judge's."""
    prompts: str = "data/fetch/test.jsonl"  # seed prompts: the first user message of each pair
    limit: int | None = 6
    turns: int = 3
    n: list = field(default_factory=lambda: [2, 4, 8])
    variants: list = field(default_factory=lambda: ["baseline", "music"])  # reward models picking the candidates
    reference: str = "baseline"  # every other variant's BoN is also judged against this one's
    policy: Sampling = field(default_factory=lambda: Sampling(max_new_tokens=48, temperature=0.7, top_p=0.9),
                             metadata={"section": Sampling})
    batch_size: int = 16  # reward-model scoring
    max_length: int | None = 1024
    seed: int = 0
    bootstrap_resamples: int = 1000

    def check(self):
        if self.turns < 1:
            return f"turns must be >= 1, got {self.turns}"
        if not self.n or any(not isinstance(k, int) or k < 1 for k in self.n):
            return f"n must be a list of positive integers, got {self.n!r}"
        if self.reference not in self.variants:
            return f"reference {self.reference!r} must be one of variants {self.variants}"
        if self.policy.temperature == 0:
            return "policy.temperature must be > 0: N greedy candidates would all be the same"


SECTIONS = {"base": BaseParams, "fetch": FetchParams, "simulate": SimulateParams,
            "contrast": ContrastParams, "train": TrainParams, "eval": EvalParams, "mt_bench": MTBenchParams,
            "judge": JudgeParams, "reward_bench": RewardBenchParams, "best_of_n": BestOfNParams}


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def build_section(name: str, params: dict, where: str):
    if name not in params:
        raise ParamsError(f"{where}: no '{name}' section")
    return _build(SECTIONS[name], params[name], f"{where}: {name}")


def section(name: str, path: str | Path = "params.yaml"):
    """The typed `name` section of params.yaml."""
    return build_section(name, load_params(path), str(path))
