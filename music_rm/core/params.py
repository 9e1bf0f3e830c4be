"""params.yaml as one typed, validated model.

params.yaml is the one source of defaults: every key must be there (profiles override part of it), and the
model below gives no defaults of its own. Types are strict (no "3" for 3, no `true` for 1), ranges are
checked, unknown keys are refused, and the rules between sections are in `Params.cross_section_rules`.
A stage loads the file once, with `load_params`, and any problem is one ParamsError naming the key.
`music-rm schema` writes the JSON Schema of params.yaml (and of a profile: the same, every key optional).
"""
import copy
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ParamsError

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
Dtype = Literal["float32", "bfloat16", "float16"]
Backend = Literal["transformers", "vllm", "openai"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, protected_namespaces=())


class BaseParams(Section):
    """The model that simulates and that every reward model starts from."""
    source: Literal["embedded", "hub"]
    wheel: str
    wheel_sha256: str
    gguf_file: str
    model_id: str
    revision: str
    trust_remote_code: bool


class FetchParams(Section):
    source: Literal["embedded", "path", "hf"]
    path: str
    format: Literal["auto", "schema", "hh", "trl_prompt", "trl_conversational", "sharegpt"]  # data/formats.py
    hf_dataset: str
    hf_revision: str
    hf_split: str
    limit: PositiveInt | None
    test_fraction: Fraction
    on_invalid: Literal["fail", "skip"]
    max_message_chars: PositiveInt


class Sampling(Section):
    max_new_tokens: PositiveInt
    temperature: Annotated[float, Field(ge=0)]  # 0: greedy
    top_p: Annotated[float, Field(gt=0, le=1)]


class VLLMParams(Section):
    model: str | None  # a Hub id; null: the base model folder
    revision: str | None
    tensor_parallel_size: PositiveInt
    max_model_len: PositiveInt | None
    unit_size: PositiveInt
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)]


class OpenAIParams(Section):
    base_url: str
    model: str
    api_key_env: str | None  # the variable's name; the key itself never goes in params
    concurrency: PositiveInt
    timeout_s: Annotated[float, Field(gt=0)]
    max_attempts: PositiveInt
    system_role: bool  # false: the served model's chat template has none (Gemma-2); a system message is folded in


class GenerationParams(Section):
    """What a generation backend needs: simulate's and the judge's."""
    backend: Backend
    dtype: Dtype
    batch_size: PositiveInt
    vllm: VLLMParams
    openai: OpenAIParams
    cache: bool


PromptCount = PositiveInt | Annotated[float, Field(gt=0, le=1)] | None  # a count, a fraction, or all (null)


class SimulateParams(GenerationParams):
    turns: PositiveInt
    seed: int
    train_prompts: PromptCount  # distinct train prompts simulated, drawn at random with `seed`
    test_prompts: PromptCount   # distinct test prompts simulated (the held-out MUSIC pairs)
    max_retries: NonNegativeInt
    context_messages: PositiveInt
    context_chars: PositiveInt
    assistant: Sampling
    user: Sampling
    rewriter: Sampling


class ContrastParams(Section):
    turns: PositiveInt
    seed: int


class TrainConfig(Section):
    seed: int
    max_length: PositiveInt
    epochs: Annotated[float, Field(gt=0)]
    max_steps: PositiveInt | None  # overrides epochs
    batch_size: PositiveInt  # pairs per device per step
    grad_accum: PositiveInt
    global_batch_size: PositiveInt | None  # pairs per optimizer step; grad_accum then follows from the world size
    learning_rate: Annotated[float, Field(gt=0)]
    warmup_steps: NonNegativeInt | Fraction  # an int counts steps; a float in (0, 1) is a share of all steps
    bf16: bool
    gradient_checkpointing: bool
    attn_implementation: str | None  # null: transformers' default
    logging_steps: PositiveInt
    truncation: Literal["drop", "truncate_oldest"]
    group_by_length: bool
    save_steps: PositiveInt | None
    lora_r: PositiveInt | None  # null: full fine-tuning
    lora_alpha: PositiveInt
    lora_dropout: Annotated[float, Field(ge=0, lt=1)]
    lora_target_modules: str | list[str]

    def accumulation(self, world_size: int) -> int:
        """Gradient accumulation steps: `grad_accum`, or what `global_batch_size` needs at this world size."""
        if self.global_batch_size is None:
            return self.grad_accum
        per_step = self.batch_size * world_size
        if self.global_batch_size % per_step:
            raise ParamsError(f"train.config.global_batch_size: {self.global_batch_size} is not a multiple of "
                              f"batch_size × processes = {self.batch_size} × {world_size}")
        return self.global_batch_size // per_step


class Variant(Section):
    pairs: str


class TrainParams(Section):
    accelerate_config: str
    config: TrainConfig
    variants: Annotated[dict[str, Variant], Field(min_length=1)]
    main_process_port: Annotated[int, Field(ge=0, le=65535, description=(
        "accelerate's main process port for multi-process training; 0 picks a free one when the training starts, so "
        "two trainings on one node do not collide. Multi-node: a fixed port, the same on every node."))]

    def variant(self, name: str) -> Variant:
        if name not in self.variants:
            raise ParamsError(f"train.variants: no variant {name!r}; defined: {sorted(self.variants)}")
        return self.variants[name]


class EvalParams(Section):
    """Held-out evaluation; `batch_size`, `max_length` and `cpu_dtype` are also how the judge scores."""
    batch_size: PositiveInt
    max_length: PositiveInt | None  # a longer conversation loses its oldest exchanges (data/lengths.py)
    cpu_dtype: Literal["float32", "bfloat16"]  # reward-model scoring on a CPU (on a GPU: bfloat16)
    cache: bool  # reuse reward-model scores of batches scored before (.cache/rewards.sqlite), in every suite
    bootstrap_resamples: PositiveInt
    seed: int
    # [a, b]: paired differences a - b in every suite; a pair naming a variant that is not trained is left out
    compare: list[Annotated[list[str], Field(min_length=2, max_length=2)]]


class JudgeParams(GenerationParams):
    """The LLM judge (judge@<set> stages and best_of_n); its generation fields are simulate's."""
    sampling: Sampling
    limit: PositiveInt | None  # first N pairs of each set
    seed: int
    bootstrap_resamples: PositiveInt
    pair_sets: dict[str, str]  # name: a pairs file; one judge@<name> stage each, none by default


class MTBenchSource(Section):
    questions: str  # MT-Bench question.jsonl
    answers: str    # folder of model_answer/<model>.jsonl
    human: str      # mt_bench_human_judgments human.jsonl
    gpt4: str       # mt_bench_human_judgments gpt4_pair.jsonl


class MTBenchParams(Section):
    batch_size: PositiveInt
    max_length: PositiveInt | None
    bootstrap_resamples: PositiveInt
    seed: int
    sources: dict[str, MTBenchSource]

    def source(self, name: str) -> MTBenchSource:
        if name not in self.sources:
            raise ParamsError(f"mt_bench.sources: no source {name!r}; defined: {sorted(self.sources)}")
        return self.sources[name]


class PromptSet(Section):
    """Prompts that start Best-of-N rollouts (data/prompts.py): a file (a DVC dependency) in one of three formats."""
    path: str
    format: Literal["auto", "schema", "hh", "ultrainteract"]
    limit: PositiveInt | None  # N distinct prompts drawn with best_of_n.seed (null: all)


class BestOfNParams(Section):
    """Multi-turn Best-of-N: the policy and user simulator are simulate's generator; the judge is judge's."""
    prompt_sets: dict[str, PromptSet]  # one best_of_n@<name> stage each, none by default
    turns: PositiveInt
    n: Annotated[list[PositiveInt], Field(min_length=1)]
    variants: Annotated[list[str], Field(min_length=1)]  # reward models that pick among the N candidates
    reference: str  # every other variant's BoN is also judged against this one's
    policy: Sampling
    batch_size: PositiveInt  # reward-model scoring
    max_length: PositiveInt | None
    seed: int
    bootstrap_resamples: PositiveInt

    def prompt_set(self, name: str) -> PromptSet:
        if name not in self.prompt_sets:
            raise ParamsError(f"best_of_n.prompt_sets: no set {name!r}; defined: {sorted(self.prompt_sets)}")
        return self.prompt_sets[name]


class RewardBenchFile(Section):
    path: str  # a RewardBench-schema file or folder, or LLMBar's folder
    format: Literal["reward_bench", "llmbar"]


class RewardBenchHub(Section):
    hf_dataset: str
    hf_revision: str  # the commit the Hub resolved is recorded in metrics.json
    hf_split: str


class RewardBenchParams(Section):
    batch_size: PositiveInt
    max_length: PositiveInt | None
    bootstrap_resamples: PositiveInt
    seed: int
    files: dict[str, RewardBenchFile]  # one reward_bench_file@<name> stage each
    hub: dict[str, RewardBenchHub]     # one reward_bench_hub@<name> stage each

    def source(self, kind: str, name: str) -> RewardBenchFile | RewardBenchHub:
        """The entry `name` of `files` (kind "file") or of `hub` (kind "hub")."""
        key, entries = ("files", self.files) if kind == "file" else ("hub", self.hub)
        if name not in entries:
            raise ParamsError(f"reward_bench.{key}: no source {name!r}; defined: {sorted(entries)}")
        return entries[name]


class Params(Section):
    base: BaseParams
    fetch: FetchParams
    simulate: SimulateParams
    contrast: ContrastParams
    train: TrainParams
    eval: EvalParams
    judge: JudgeParams
    mt_bench: MTBenchParams
    best_of_n: BestOfNParams
    reward_bench: RewardBenchParams

    @model_validator(mode="after")
    def cross_section_rules(self):
        """Every rule that ties one section to another."""
        if self.contrast.turns > self.simulate.turns:
            raise ValueError(f"contrast.turns: {self.contrast.turns} is more than the {self.simulate.turns} turns "
                             "simulated (simulate.turns)")
        missing = [v for v in self.best_of_n.variants if v not in self.train.variants]
        if missing and self.best_of_n.prompt_sets:
            raise ValueError(f"best_of_n.variants: {missing} are not in train.variants {sorted(self.train.variants)}")
        if self.best_of_n.reference not in self.best_of_n.variants:
            raise ValueError(f"best_of_n.reference: {self.best_of_n.reference!r} is not one of best_of_n.variants "
                             f"{self.best_of_n.variants}")
        if self.best_of_n.policy.temperature == 0:
            raise ValueError("best_of_n.policy.temperature: must be > 0, or the N candidates would all be the same")
        return self

    def sections(self, *names: str) -> dict:
        """The named sections as plain data (what a stage run logs as its params)."""
        return {name: getattr(self, name).model_dump(mode="json") for name in names}


def _key(loc: tuple) -> str:
    return ".".join(str(part) for part in loc if not str(part).startswith(("function-", "tagged-union")))


def _one_line(error: ValidationError, where: str) -> ParamsError:
    """The first problem of a ValidationError, as `where: key: what is wrong (got value)`."""
    e = error.errors(include_url=False)[0]
    key = _key(e["loc"])
    if e["type"] == "missing":
        return ParamsError(f"{where}: {key}: missing (params.yaml sets every key; see docs/params.md)")
    if e["type"] == "extra_forbidden":
        return ParamsError(f"{where}: {key}: unknown key")
    message = e["msg"].removeprefix("Value error, ")
    if e["type"] == "value_error" and not key:  # a cross-section rule names its own key
        return ParamsError(f"{where}: {message}")
    return ParamsError(f"{where}: {key}: {message[0].lower() + message[1:]} (got {e['input']!r})")


def validate(raw, where: str) -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise _one_line(e, where) from None


def read_yaml(path: str | Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except OSError as e:
        raise ParamsError(f"{path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """params.yaml, validated whole: each stage calls this once."""
    return validate(read_yaml(path), str(path))


def merge(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` applied: mappings merge key by key, any other value replaces."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def apply_profile(params: dict, profile: dict, where: str) -> dict:
    """params.yaml's content with a profile merged over it, validated (raises ParamsError)."""
    if not isinstance(profile, dict):
        raise ParamsError(f"{where}: a profile is a mapping of sections, got {type(profile).__name__}")
    result = merge(params, profile)
    validate(result, where)
    return result


def json_schema(profile: bool = False) -> dict:
    """The JSON Schema of params.yaml; with `profile`, of a profile (the same with no key required)."""
    schema = Params.model_json_schema()
    if profile:
        def optional(node):
            if isinstance(node, dict):
                node.pop("required", None)
                for value in node.values():
                    optional(value)
            elif isinstance(node, list):
                for value in node:
                    optional(value)
        optional(schema)
    schema["title"] = "MUSIC profile" if profile else "MUSIC params.yaml"
    return schema
